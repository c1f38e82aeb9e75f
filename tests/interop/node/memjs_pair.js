// memjs (binary protocol only) against a replicating pair: writes on A, reads on B.
//
//     node memjs_pair.js HOST:PORT_A HOST:PORT_B [USER PASSWORD]
//
// With USER and PASSWORD memjs logs in with SASL PLAIN first (servers started with -S). Prints
// "ok" and exits 0 when every step held; otherwise prints the failing step and exits 1. Every
// wait for replication polls with a deadline.
'use strict';

const memjs = require('memjs');

const [a, b, username, password] = process.argv.slice(2);
const DEADLINE_MS = 15000;
// Failures must surface, not be retried into a timeout; memjs logs them through this.
const quiet = { log: () => {} };
const options = { timeout: 2, conntimeout: 2, retries: 1, logger: quiet, username, password };

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(what, probe) {
  const end = Date.now() + DEADLINE_MS;
  let last;
  while (Date.now() < end) {
    try {
      last = await probe();
      if (last === true) {
        return;
      }
    } catch (e) {
      last = e;
    }
    await sleep(50);
  }
  throw new Error(`${what}: not true after ${DEADLINE_MS} ms (last: ${last})`);
}

function check(what, cond) {
  if (!cond) {
    throw new Error(what);
  }
}

async function main() {
  const ca = memjs.Client.create(a, options);
  const cb = memjs.Client.create(b, options);
  try {
    const key = `memjs-${process.pid}`;
    check('set on A', await ca.set(key, 'hello from A', { expires: 300 }));
    check('get on A', String((await ca.get(key)).value) === 'hello from A');
    await until('value replicated to B', async () => {
      const { value } = await cb.get(key);
      return value !== null && String(value) === 'hello from A';
    });

    const counter = `${key}-n`;
    // Created with its initial value by the binary increment, then incremented.
    let r = await ca.increment(counter, 5, { initial: 10 });
    check(`incr creates with initial (got ${JSON.stringify(r)})`, r.success && r.value === 10);
    r = await ca.increment(counter, 5);
    check(`incr adds (got ${JSON.stringify(r)})`, r.success && r.value === 15);
    await until('counter replicated to B', async () => {
      const { value } = await cb.get(counter);
      return value !== null && String(value) === '15';
    });
    r = await cb.increment(counter, 1);
    check(`incr on B (got ${JSON.stringify(r)})`, r.success && r.value === 16);
    await until('B increment replicated to A', async () => {
      const { value } = await ca.get(counter);
      return value !== null && String(value) === '16';
    });

    check('delete on A', await ca.delete(key));
    await until('delete replicated to B', async () => (await cb.get(key)).value === null);
    check('delete again is a miss', !(await ca.delete(key)));
    finished = true;
    console.log('ok');
  } finally {
    ca.close();
    cb.close();
  }
}

// memjs leaves a request whose connection was closed unanswered: node then exits with
// nothing left to do, which must not pass for success.
let finished = false;
process.on('exit', (code) => {
  if (!finished && code === 0) {
    console.log('FAILED: memjs gave up without an answer');
    process.exitCode = 1;
  }
});

main().catch((e) => {
  console.log(`FAILED: ${e.message || e}`);
  process.exit(1);
});
