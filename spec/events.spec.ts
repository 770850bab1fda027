/** Each registry event, announced once after the change is stored, whichever way it came in. */
import express from 'express';
import supertest from 'supertest';
import { createRegistryRouter, MemoryStorage, REGISTRY_EVENT_NAMES, type RegistryEventMap, type RegistryEventName, type RegistryRouter } from '../lib';
import { bytes, chunked, listen, request, sha256 } from './support/http';

describe('registry events', () => {
  let registry: RegistryRouter;
  let events: [RegistryEventName, unknown][];

  function setUp(progressInterval?: number) {
    registry = createRegistryRouter({ storage: new MemoryStorage(), progressInterval });
    events = [];
    // The changes a registry makes; the per-request events have their own spec (operations.spec.ts).
    for (const name of REGISTRY_EVENT_NAMES.filter((event) => event !== 'requestStarted' && event !== 'requestCompleted')) {
      // One recorder for every event name; `as never` bridges the per-name listener types.
      registry.events.on(name, ((payload: unknown) => events.push([name, payload])) as never);
    }
    const app = express();
    app.use(registry);
    return app;
  }

  const named = <K extends RegistryEventName>(name: K) =>
    events.filter(([recorded]) => recorded === name).map(([, payload]) => payload as RegistryEventMap[K][0]);

  it('announces a chunked push: started, progress up to the full size, committed with digest and size', async () => {
    const server = await listen(setUp(0));
    try {
      const data = bytes(300_000);
      const started = await request(`${server.url}/v2/events/app/blobs/uploads/`, { method: 'POST' });
      const location = started.headers.location!;
      const uploadId = started.headers['docker-upload-uuid'];
      const patched = await request(server.url + location, { method: 'PATCH', body: chunked(data, 50_000) });
      expect(patched.status).toBe(202);
      const put = await request(`${server.url}${location}?digest=${sha256(data)}`, { method: 'PUT' });
      expect(put.status).toBe(201);

      expect(events[0]).toEqual(['uploadStarted', { repository: 'events/app', uploadId }]);
      const progress = named('uploadProgress').map((event) => event.bytes);
      expect(progress.length).toBeGreaterThanOrEqual(2);
      expect(progress).toEqual([...progress].sort((a, b) => a - b));
      expect(progress[progress.length - 1]).toBe(data.length);
      expect(named('uploadProgress').every((event) => event.uploadId === uploadId && event.repository === 'events/app')).toBe(true);
      expect(events[events.length - 1]).toEqual([
        'blobCommitted',
        { repository: 'events/app', uploadId, digest: sha256(data), size: data.length, verifyMs: expect.any(Number) },
      ]);
    } finally {
      await server.close();
    }
  });

  it('throttles progress: one event per streaming body when the interval is long', async () => {
    const server = await listen(setUp(60_000));
    try {
      const data = bytes(200_000);
      const started = await request(`${server.url}/v2/events/app/blobs/uploads/`, { method: 'POST' });
      await request(server.url + started.headers.location!, { method: 'PATCH', body: chunked(data, 10_000) });
      expect(named('uploadProgress')).toHaveLength(1);
    } finally {
      await server.close();
    }
  });

  it('announces a cancelled session with the bytes it dropped, and a failed monolithic push as cancelled', async () => {
    const agent = supertest(setUp());
    const started = await agent.post('/v2/events/app/blobs/uploads/').expect(202);
    await agent.patch(started.headers.location).set('Content-Type', 'application/octet-stream').send(bytes(1234)).expect(202);
    await agent.delete(started.headers.location).expect(204);
    expect(named('uploadCancelled')).toEqual([{ repository: 'events/app', uploadId: started.headers['docker-upload-uuid'], size: 1234 }]);

    await agent
      .post(`/v2/events/app/blobs/uploads/?digest=${sha256('something else')}`)
      .set('Content-Type', 'application/octet-stream')
      .send(bytes(10))
      .expect(400);
    expect(named('uploadCancelled')).toHaveLength(2);
    expect(named('uploadCancelled')[1]).toMatchObject({ repository: 'events/app', size: 10 });
    expect(named('blobCommitted')).toEqual([]);
  });

  it('announces mounts and deletions with repository and digest', async () => {
    const agent = supertest(setUp());
    const data = bytes(500, 7);
    await agent.post(`/v2/events/source/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    await agent.post(`/v2/events/target/blobs/uploads/?mount=${sha256(data)}&from=events/source`).expect(201);
    await agent.delete(`/v2/events/source/blobs/${sha256(data)}`).expect(202);
    expect(named('blobMounted')).toEqual([{ repository: 'events/target', digest: sha256(data), size: 500, from: 'events/source' }]);
    expect(named('blobDeleted')).toEqual([{ repository: 'events/source', digest: sha256(data) }]);
  });

  it('announces an expired session, with the bytes it held, when purging removes it', async () => {
    const agent = supertest(setUp());
    const started = await agent.post('/v2/events/app/blobs/uploads/').expect(202);
    await agent.patch(started.headers.location).set('Content-Type', 'application/octet-stream').send(bytes(777)).expect(202);
    const uploadId = started.headers['docker-upload-uuid'];
    expect(await registry.purgeStaleUploads(0)).toEqual([uploadId]);
    expect(named('uploadExpired')).toEqual([{ repository: 'events/app', uploadId, size: 777 }]);
    expect(named('uploadCancelled')).toEqual([]);
    await agent.get(started.headers.location).expect(404);
  });

  it('keeps serving when a listener throws', async () => {
    const agent = supertest(setUp());
    registry.events.on('blobCommitted', () => {
      throw new Error('a host listener bug');
    });
    const data = bytes(64);
    await agent.post(`/v2/events/app/blobs/uploads/?digest=${sha256(data)}`).set('Content-Type', 'application/octet-stream').send(data).expect(201);
    const blob = await agent.get(`/v2/events/app/blobs/${sha256(data)}`).buffer(true).expect(200);
    expect(Buffer.compare(blob.body, data)).toBe(0);
  });

  it('announces manifest pushes and deletions with repository, digest, tag and size', async () => {
    const agent = supertest(setUp());
    const config = Buffer.from('{}');
    const layer = bytes(321, 3);
    for (const blob of [config, layer]) {
      await agent.post(`/v2/events/art/blobs/uploads/?digest=${sha256(blob)}`).set('Content-Type', 'application/octet-stream').send(blob).expect(201);
    }
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        artifactType: 'application/vnd.example.events',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(config), size: config.length },
        layers: [{ mediaType: 'application/octet-stream', digest: sha256(layer), size: layer.length }],
      }),
    );
    const type = 'application/vnd.oci.image.manifest.v1+json';
    // As text: superagent would re-serialize a Buffer under a +json type.
    await agent.put('/v2/events/art/manifests/v1').set('Content-Type', type).send(manifest.toString()).expect(201);
    await agent.put('/v2/events/art/manifests/v2').set('Content-Type', type).send(manifest.toString()).expect(201);
    await agent.delete('/v2/events/art/manifests/v1').expect(202);
    await agent.delete(`/v2/events/art/manifests/${sha256(manifest)}`).expect(202);

    const pushed = { repository: 'events/art', digest: sha256(manifest), size: manifest.length, mediaType: type, artifactType: 'application/vnd.example.events' };
    expect(named('manifestPushed')).toEqual([
      { ...pushed, tag: 'v1', tags: ['v1'] },
      { ...pushed, tag: 'v2', tags: ['v2'] },
    ]);
    expect(named('tagDeleted')).toEqual([{ repository: 'events/art', tag: 'v1', digest: sha256(manifest) }]);
    expect(named('manifestDeleted')).toEqual([{ repository: 'events/art', digest: sha256(manifest), tags: ['v2'] }]);
  });
});
