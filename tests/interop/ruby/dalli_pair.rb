# Dalli 3.0 (Debian ruby-dalli; the binary protocol) against a replicating pair: writes on A,
# reads on B.
#
#     ruby dalli_pair.rb HOST:PORT_A HOST:PORT_B [USER PASSWORD]
#
# With USER and PASSWORD Dalli logs in with SASL PLAIN first (servers started with -S). Prints
# "ok" and exits 0 when every step held; otherwise prints the failing step and exits 1. Every
# wait for replication polls with a deadline.
require 'dalli'
require 'logger'

a, b, username, password = ARGV
DEADLINE = 15.0
Dalli.logger = Logger.new(nil)

def client(server, username, password)
  Dalli::Client.new(server, username: username, password: password, socket_timeout: 2,
                            socket_max_failures: 1, down_retry_delay: 0, raw: true)
end

def check(what, cond)
  raise what unless cond
end

def until_true(what)
  last = nil
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + DEADLINE
  while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
    begin
      last = yield
      return if last == true
    rescue StandardError => e
      last = e
    end
    sleep 0.05
  end
  raise "#{what}: not true after #{DEADLINE} s (last: #{last.inspect})"
end

begin
  ca = client(a, username, password)
  cb = client(b, username, password)
  key = "dalli-#{Process.pid}"
  check('set on A', ca.set(key, 'hello from A', 300))
  check('get on A', ca.get(key) == 'hello from A')
  until_true('value replicated to B') { cb.get(key) == 'hello from A' }

  counter = "#{key}-n"
  # A missing counter without a default is not created (the 0xffffffff rule).
  check('incr without default misses', ca.incr("#{key}-none", 1).nil?)
  check('incr creates with default', ca.incr(counter, 5, 300, 10) == 10)
  check('incr adds', ca.incr(counter, 5) == 15)
  until_true('counter replicated to B') { cb.get(counter) == '15' }
  check('incr on B', cb.incr(counter, 1) == 16)
  until_true('B increment replicated to A') { ca.get(counter) == '16' }

  check('delete on A', ca.delete(key))
  until_true('delete replicated to B') { cb.get(key).nil? }
  check('delete again is a miss', !ca.delete(key))
  puts 'ok'
rescue StandardError => e
  puts "FAILED: #{e.class}: #{e.message}"
  exit 1
end
