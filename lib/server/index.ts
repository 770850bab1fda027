/**
 * The `express-oci-registry/server` entry: the registry as a standalone server, as
 * `express-oci-registry serve` and the example server run it (the storage, sign-in and read-only
 * mode from settings, listening, event log lines, shutdown on signals).
 *
 * @packageDocumentation
 */
export { createRegistryApp, type RegistryAppOptions } from './app';
export { closeOnSignals, startRegistryServer, type RegistryServer, type ServeSettings } from './serve';
export { htpasswdAuthorize, parseHtpasswd } from './htpasswd';
