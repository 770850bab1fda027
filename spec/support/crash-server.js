// A registry server for crash tests, run as a child process: the example server's setup over
// FileSystemStorage (from the compiled dist/), whose adapter kills the process with SIGKILL at
// one chosen moment, so a test can hit exactly that moment without any timing.
//
//   DATA_DIR=<folder> CRASH_AT=<method>:<before|after>[:<key prefix>] node spec/support/crash-server.js
//
// e.g. CRASH_AT=commitUpload:after dies right after the verified bytes were renamed into content/
// and before the blob is linked. Without CRASH_AT it is a plain server. It prints its port.
// NOTIFY_URL adds a notification endpoint, with NOTIFY_LEASE_MS as its lease and quick retries.
'use strict';
const express = require('express');
const { join } = require('node:path');
const { createRegistryRouter, FileSystemStorage } = require(join(__dirname, '..', '..', 'dist', 'lib'));

const [method, when, keyPrefix = ''] = (process.env.CRASH_AT || '').split(':');
const storage = new FileSystemStorage({ root: process.env.DATA_DIR });

function die() {
  process.kill(process.pid, 'SIGKILL');
}

const crashing = new Proxy(storage, {
  get(target, property) {
    const value = Reflect.get(target, property);
    if (property !== method || typeof value !== 'function') return typeof value === 'function' ? value.bind(target) : value;
    return async (...args) => {
      const chosen = args.some((arg) => typeof arg === 'string' && arg.startsWith(keyPrefix));
      if (chosen && when === 'before') die();
      const result = await value.apply(target, args);
      if (chosen && when === 'after') die();
      return result;
    };
  },
});

const app = express();
const notifications = process.env.NOTIFY_URL
  ? [{ url: process.env.NOTIFY_URL, leaseDuration: Number(process.env.NOTIFY_LEASE_MS || 30000), pollInterval: 100, backoff: { initial: 10, max: 200 } }]
  : undefined;
app.use(createRegistryRouter({ storage: crashing, uploadPurging: false, notifications }));
const server = app.listen(0, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
