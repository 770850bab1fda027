// A host app for tests of what the registry does to the process it runs in, run as a child
// process: common middleware mounted before the router, and counters of every uncaught exception
// and unhandled rejection (a host without such handlers would have died of them).
//
//   MIDDLEWARE=<json|json-plus|raw|raw-all|text|urlencoded|by-header,…> BODY_IDLE_TIMEOUT=<ms>
//   AUTHORIZE=<hold|async> EXPRESS=<express|express4> node spec/support/host-app.js
//
// `by-header` mounts every parser, each consuming the bodies whose X-Parser header names it.
// AUTHORIZE=hold makes `authorize`, for requests with an X-Hold header, print
// `authorizing <method> <url>` and wait until the client has gone (then allow); AUTHORIZE=async
// allows after a turn of the event loop. GET /counters answers the counters; GET /settle answers
// them once every held authorization has ended and every timer a request armed before it (for at
// most BODY_IDLE_TIMEOUT ms) has fired. It prints its port.
'use strict';
const Module = require('node:module');
const { join } = require('node:path');

if (process.env.EXPRESS === 'express4') {
  // The registry's own `require('express')` gets Express 4 too, as in a host app built on it.
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    return resolve.call(this, request === 'express' ? 'express4' : request, ...rest);
  };
}
const express = require('express');
const { createRegistryRouter, MemoryStorage } = require(join(__dirname, '..', '..', 'dist', 'lib'));

const counters = { uncaught: 0, unhandled: 0, errors: [] };
process.on('uncaughtException', (error) => {
  counters.uncaught++;
  counters.errors.push(String(error && error.stack));
});
process.on('unhandledRejection', (error) => {
  counters.unhandled++;
  counters.errors.push(String(error && error.stack));
});

const bodyIdleTimeout = Number(process.env.BODY_IDLE_TIMEOUT || 60000);
const parsers = {
  json: () => express.json(),
  'json-plus': () => express.json({ type: 'application/*+json' }),
  raw: () => express.raw(),
  'raw-all': () => express.raw({ type: () => true }),
  text: () => express.text(),
  urlencoded: () => express.urlencoded({ extended: false }),
  'by-header': () => [
    express.json({ type: (req) => req.headers['x-parser'] === 'json' }),
    express.text({ type: (req) => req.headers['x-parser'] === 'text' }),
    express.raw({ type: (req) => req.headers['x-parser'] === 'raw' }),
    express.urlencoded({ extended: false, type: (req) => req.headers['x-parser'] === 'urlencoded' }),
  ],
};

/** Held authorizations that have not ended yet. */
const held = new Set();
let heldEnded = () => undefined;
const authorizers = {
  hold: (req) => {
    // A mount asks twice; by the second question the client is gone.
    if (req.destroyed || !req.headers['x-hold']) return true;
    console.log(`authorizing ${req.method} ${req.originalUrl}`);
    const done = new Promise((resolve) => req.once('close', () => resolve(true)));
    held.add(done);
    return done.finally(() => {
      held.delete(done);
      if (held.size === 0) heldEnded();
    });
  },
  async: () => new Promise((resolve) => setImmediate(() => resolve(true))),
};

const app = express();
app.get('/counters', (_req, res) => {
  res.json(counters);
});
app.get('/settle', async (_req, res) => {
  if (held.size > 0) await new Promise((resolve) => (heldEnded = resolve));
  // The requests held above resume within this turn; a timer armed now for longer than any of
  // theirs fires after all of them.
  await new Promise((resolve) => setTimeout(resolve, bodyIdleTimeout * 3));
  res.json(counters);
});
for (const name of (process.env.MIDDLEWARE || '').split(',').filter(Boolean)) app.use(parsers[name]());
const registry = createRegistryRouter({
  storage: new MemoryStorage(),
  bodyIdleTimeout,
  uploadPurging: false,
  authorize: authorizers[process.env.AUTHORIZE],
});
app.use(registry);
const server = app.listen(0, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
