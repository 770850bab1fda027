// The bodies notifications are sent as: the reference registry's envelope, or CloudEvents 1.0.
import { hostname } from 'node:os';
import type { RecordedEventName, RegistryEventMap } from '../events';
import type { RequestOrigin } from '../request-log';

/** One recorded change as the outbox keeps it. */
export interface OutboxEntry<K extends RecordedEventName = RecordedEventName> {
  /** The event id: the same in every delivery of it, to every endpoint, so receivers can drop duplicates. */
  id: string;
  name: K;
  /** When the change was made (ISO 8601). */
  time: string;
  /** The registry instance that made it. */
  instance: string;
  /** The request that made it; undefined for changes host code made through the store. */
  request?: RequestOrigin;
  payload: RegistryEventMap[K][0];
}

/** How a notification body is written. */
export type NotificationFormat = 'distribution' | 'cloudevents';

/** A request body and its media type. */
export interface NotificationBody {
  contentType: string;
  body: string;
}

/** Media type of the reference registry's envelope. */
export const DISTRIBUTION_EVENTS = 'application/vnd.docker.distribution.events.v1+json';
/** Media type of one CloudEvent in structured mode. */
export const CLOUDEVENTS_JSON = 'application/cloudevents+json';

/** Prefix of the CloudEvents `type` attribute; the event's name follows. */
export const CLOUDEVENT_TYPE_PREFIX = 'express-oci-registry.';

/** The body carrying `entries` (exactly one for CloudEvents, which are sent one per request). */
export function notificationBody(format: NotificationFormat, entries: OutboxEntry[], source: string): NotificationBody {
  if (format === 'cloudevents') {
    const [entry] = entries;
    return {
      contentType: CLOUDEVENTS_JSON,
      body: JSON.stringify({
        specversion: '1.0',
        id: entry.id,
        source,
        type: CLOUDEVENT_TYPE_PREFIX + entry.name,
        subject: entry.payload.repository,
        time: entry.time,
        datacontenttype: 'application/json',
        data: entry.payload,
      }),
    };
  }
  return { contentType: DISTRIBUTION_EVENTS, body: JSON.stringify({ events: entries.map(distributionEvent) }) };
}

const host = hostname();

/** An entry as one event of the reference registry's envelope: what was done (`action`) to what (`target`). */
function distributionEvent(entry: OutboxEntry) {
  const base = { id: entry.id, timestamp: entry.time, request: entry.request, source: { addr: host, instanceID: entry.instance } };
  const { repository, digest } = entry.payload;
  switch (entry.name) {
    case 'manifestPushed': {
      const { mediaType, size, tag } = entry.payload as RegistryEventMap['manifestPushed'][0];
      return { ...base, action: 'push', target: { mediaType, size, length: size, digest, repository, tag } };
    }
    case 'blobCommitted': {
      const { size } = entry.payload as RegistryEventMap['blobCommitted'][0];
      return { ...base, action: 'push', target: { mediaType: 'application/octet-stream', size, length: size, digest, repository } };
    }
    case 'blobMounted': {
      const { size, from } = entry.payload as RegistryEventMap['blobMounted'][0];
      return { ...base, action: 'mount', target: { size, length: size, digest, repository, fromRepository: from } };
    }
    case 'tagDeleted': {
      const { tag } = entry.payload as RegistryEventMap['tagDeleted'][0];
      return { ...base, action: 'delete', target: { digest, repository, tag } };
    }
    default:
      return { ...base, action: 'delete', target: { digest, repository } };
  }
}
