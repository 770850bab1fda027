/** The registry as a whole Express app: the router, and registry events written as log lines. */
import express from 'express';
import { REGISTRY_EVENT_NAMES } from '../events';
import { createRegistryRouter, type RegistryOptions, type RegistryRouter } from '../router';

/** Options for {@link createRegistryApp}: the router's, and what the app adds around it. */
export interface RegistryAppOptions extends RegistryOptions {
  /** Where each registry event is written as one line, `event <name> key=value …`; default: nowhere. */
  logEvent?: (line: string) => void;
}

/** An Express app serving the registry at `/v2/`; host routes may be added after it. */
export function createRegistryApp(options: RegistryAppOptions): { app: express.Express; registry: RegistryRouter } {
  const { logEvent, ...registryOptions } = options;
  const registry = createRegistryRouter(registryOptions);
  if (logEvent) logEvents(registry, logEvent);
  const app = express();
  app.disable('x-powered-by');
  app.use(registry);
  return { app, registry };
}

/** Writes every registry event but `requestStarted` (its `requestCompleted` line follows) as `event <name> key=value …`. */
function logEvents(registry: RegistryRouter, write: (line: string) => void): void {
  for (const name of REGISTRY_EVENT_NAMES.filter((event) => event !== 'requestStarted')) {
    registry.events.on(name, ((payload: Record<string, unknown>) => {
      const fields = Object.entries(payload)
        .filter(([, value]) => value !== undefined)
        .map(([key, value]) => `${key}=${Array.isArray(value) ? value.join(',') : String(value)}`);
      write(`event ${name} ${fields.join(' ')}`);
    }) as never);
  }
}
