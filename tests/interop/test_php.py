"""php-memcached (libmemcached) over the text protocol against the system under test."""

import shutil
import subprocess

import pytest

PHP_SCRIPT = r"""
$m = new Memcached();
$m->setOption(Memcached::OPT_BINARY_PROTOCOL, false);
$m->setOption(Memcached::OPT_COMPRESSION, false);
$m->addServer('127.0.0.1', (int)$argv[1]);
function out($name, $v) { echo $name, '=', var_export($v, true), "\n"; }
out('set', $m->set('k', 'hello'));
out('get', $m->get('k'));
out('miss', $m->get('nope'));
out('miss_code', $m->getResultCode() === Memcached::RES_NOTFOUND);
out('add_existing', $m->add('k', 'x'));
out('add_new', $m->add('k2', 'x'));
out('replace', $m->replace('k2', 'y'));
out('get_k2', $m->get('k2'));
out('set_int', $m->set('n', 10));
out('increment', $m->increment('n', 5));
out('decrement', $m->decrement('n', 3));
out('increment_missing', $m->increment('missing', 1));
out('array', $m->set('arr', ['a' => 1, 'b' => [2, 3]]));
out('get_arr', $m->get('arr'));
$r = $m->get('k', null, Memcached::GET_EXTENDED);
out('cas_ok', $m->cas($r['cas'], 'k', 'world'));
out('cas_stale', $m->cas($r['cas'], 'k', 'again'));
out('after_cas', $m->get('k'));
out('setMulti', $m->setMulti(['m1' => 'a', 'm2' => 'b']));
out('getMulti', $m->getMulti(['m1', 'm2', 'm3']));
$m->setOption(Memcached::OPT_COMPRESSION, false);
out('append', $m->append('m1', '+'));
out('prepend', $m->prepend('m1', '-'));
out('get_m1', $m->get('m1'));
out('touch', $m->touch('m2', 1000));
out('delete', $m->delete('k'));
out('delete_again', $m->delete('k'));
out('get_deleted', $m->get('k'));
out('big', $m->set('big', str_repeat('x', 900000)));
out('big_len', strlen($m->get('big')));
out('flush', $m->flush());
out('after_flush', $m->get('m1'));
"""

EXPECTED = """\
set=true
get='hello'
miss=false
miss_code=true
add_existing=false
add_new=true
replace=true
get_k2='y'
set_int=true
increment=15
decrement=12
increment_missing=false
array=true
get_arr=array (
  'a' => 1,
  'b' => 
  array (
    0 => 2,
    1 => 3,
  ),
)
cas_ok=true
cas_stale=false
after_cas='world'
setMulti=true
getMulti=array (
  'm1' => 'a',
  'm2' => 'b',
)
append=true
prepend=true
get_m1='-a+'
touch=true
delete=true
delete_again=false
get_deleted=false
big=true
big_len=900000
flush=true
after_flush=false
"""


def php_has_memcached():
    if shutil.which("php") is None:
        return False
    out = subprocess.run(["php", "-m"], capture_output=True, text=True).stdout
    return "memcached" in out.split()


@pytest.mark.skipif(not php_has_memcached(), reason="php-cli with the memcached extension is not installed")
def test_php_memcached_text_protocol(server):
    proc = subprocess.run(
        ["php", "-r", PHP_SCRIPT, str(server.port)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == EXPECTED, proc.stdout + proc.stderr
