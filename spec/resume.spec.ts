/** Resuming uploads over FileSystemStorage: after a restart, and after a client disconnects mid-PATCH. */
import http from 'node:http';
import supertest from 'supertest';
import express from 'express';
import { createRegistryRouter, FileSystemStorage } from '../lib';
import { bytes, listen, makeApp, request, sha256, sha512 } from './support/http';
import { finishUpload, storedSize, waitFor } from './support/streaming';
import { useTempDir } from './support/temp-dir';

describe('resuming uploads over FileSystemStorage', () => {
  const root = useTempDir('oci-resume-');

  it.each([
    ['sha256', sha256],
    ['sha512', sha512],
  ])('continues after the router is re-created on the same root, verifying %s from the stored bytes', async (_algorithm, digestOf) => {
    const data = bytes(2 * 1024 * 1024, 11);
    const first = supertest(makeApp(new FileSystemStorage({ root: root() })));
    const started = await first.post('/v2/team/app/blobs/uploads/').expect(202);
    const location = started.headers.location;
    await first.patch(location).set('Content-Range', `0-${1_000_000 - 1}`).set('Content-Type', 'application/octet-stream').send(data.subarray(0, 1_000_000)).expect(202);

    // A new router over the same folder stands for a restarted process: no running hash survives.
    const second = supertest(makeApp(new FileSystemStorage({ root: root() })));
    const status = await second.get(location).expect(204);
    expect(status.headers.range).toBe('0-999999');
    await second.patch(location).set('Content-Type', 'application/octet-stream').send(data.subarray(1_000_000)).expect(202);
    await second.put(`${location}?digest=${digestOf(data)}`).expect(201);
    const blob = await second.get(`/v2/team/app/blobs/${digestOf(data)}`).buffer(true).expect(200);
    expect(Buffer.compare(blob.body, data)).toBe(0);
  });

  it('a wrong digest after a restart is still refused', async () => {
    const first = supertest(makeApp(new FileSystemStorage({ root: root() })));
    const started = await first.post('/v2/team/app/blobs/uploads/').expect(202);
    await first.patch(started.headers.location).set('Content-Type', 'application/octet-stream').send(Buffer.from('real bytes')).expect(202);
    const second = supertest(makeApp(new FileSystemStorage({ root: root() })));
    const res = await second.put(`${started.headers.location}?digest=${sha256('other bytes')}`).expect(400);
    expect(res.body.errors[0].code).toBe('DIGEST_INVALID');
  });

  it('after a client disconnects mid-PATCH, the session holds exactly the bytes stored and the upload continues', async () => {
    const data = bytes(4 * 1024 * 1024, 12);
    const storage = new FileSystemStorage({ root: root() });
    const router = createRegistryRouter({ storage, uploadPurging: false });
    const server = await listen(express().use(router));
    try {
      const started = await request(`${server.url}/v2/team/app/blobs/uploads/`, { method: 'POST' });
      const location = started.headers.location!;
      const id = location.split('/').pop()!;

      // Declare the whole blob, send about a third of it, and drop the connection once the
      // registry has taken some of it (its first progress event), whatever the machine's pace.
      const received = new Promise<void>((resolve) => router.events.once('uploadProgress', () => resolve()));
      await new Promise<void>((resolve) => {
        const req = http.request(`${server.url}${location}`, {
          method: 'PATCH',
          agent: false,
          headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(data.length) },
        });
        req.on('error', () => resolve());
        req.on('close', () => resolve());
        req.write(data.subarray(0, 1_400_000));
        void received.then(() => req.destroy());
      });

      // The server finishes the aborted append in the background: wait until it releases the upload.
      await waitFor('the aborted append to end', () => storage.uploadBusy(id), (busy) => !busy);
      const stored = await storedSize(server.url, location);
      expect(stored).toBeGreaterThan(0);
      expect(stored).toBeLessThanOrEqual(1_400_000);

      expect(await finishUpload(server.url, location, data, stored)).toBe(201);
      const blob = await request(`${server.url}/v2/team/app/blobs/${sha256(data)}`, { method: 'GET' });
      expect(Buffer.compare(blob.body, data)).toBe(0);
    } finally {
      await server.close();
    }
  });
});
