/** The referrers API: subjects, artifact type filters, and deletes. */
import supertest from 'supertest';
import { MemoryStorage, type StorageAdapter } from '../lib';
import { builtInStorages } from './support/storages';
import { makeApp, sha256 } from './support/http';
import { descriptor, makeImage, OCI_INDEX, OCI_MANIFEST, pushBlob, pushImage } from './support/oci';

const EMPTY = '{}';
const SBOM = 'application/vnd.example.sbom.v1';
const SIGNATURE = 'application/vnd.example.signature.v1';

/** An artifact manifest (empty config) that refers to `subject`. */
function artifact(subject: Buffer, artifactType: string | undefined, annotations: Record<string, string>, extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      ...(artifactType ? { artifactType } : {}),
      config: descriptor('application/vnd.oci.empty.v1+json', EMPTY),
      layers: [],
      subject: descriptor(OCI_MANIFEST, subject),
      annotations,
      ...extra,
    }),
  );
}

describe.each(builtInStorages)('referrers over %s', (_name, makeStorage) => {
  let agent: ReturnType<typeof supertest>;
  let cleanup: () => Promise<void>;
  const subject = makeImage('subject');
  const sbom = artifact(subject.manifest, SBOM, { 'org.example.format': 'spdx' });
  const signature = artifact(subject.manifest, SIGNATURE, { 'org.example.key': 'abc' });

  async function pushReferrer(repository: string, body: Buffer) {
    return agent.put(`/v2/${repository}/manifests/${sha256(body)}`).set('Content-Type', OCI_MANIFEST).send(body.toString()).expect(201);
  }

  beforeEach(async () => {
    let storage: StorageAdapter;
    ({ storage, cleanup } = await makeStorage());
    agent = supertest(makeApp(storage));
    await pushBlob(agent, 'team/app', EMPTY);
  });
  afterEach(() => cleanup());

  it('lists the referrers of a subject as an image index of descriptors', async () => {
    await pushImage(agent, 'team/app', subject, 'v1');
    expect((await pushReferrer('team/app', sbom)).headers['oci-subject']).toBe(subject.digest);
    await pushReferrer('team/app', signature);
    const res = await agent.get(`/v2/team/app/referrers/${subject.digest}`).expect(200);
    expect(res.headers['content-type']).toBe(OCI_INDEX);
    expect(res.headers['oci-filters-applied']).toBeUndefined();
    const body = JSON.parse(res.text);
    expect(body.schemaVersion).toBe(2);
    expect(body.mediaType).toBe(OCI_INDEX);
    const expected = [
      { mediaType: OCI_MANIFEST, digest: sha256(sbom), size: sbom.length, artifactType: SBOM, annotations: { 'org.example.format': 'spdx' } },
      { mediaType: OCI_MANIFEST, digest: sha256(signature), size: signature.length, artifactType: SIGNATURE, annotations: { 'org.example.key': 'abc' } },
    ];
    expect(body.manifests).toEqual(expect.arrayContaining(expected));
    expect(body.manifests).toHaveLength(2);
  });

  it('lists referrers even when the subject manifest does not exist', async () => {
    await pushReferrer('team/app', sbom);
    await agent.head(`/v2/team/app/manifests/${subject.digest}`).expect(404);
    const body = JSON.parse((await agent.get(`/v2/team/app/referrers/${subject.digest}`).expect(200)).text);
    expect(body.manifests.map((entry: { digest: string }) => entry.digest)).toEqual([sha256(sbom)]);
  });

  it('filters by artifactType and says so', async () => {
    await pushReferrer('team/app', sbom);
    await pushReferrer('team/app', signature);
    const res = await agent.get(`/v2/team/app/referrers/${subject.digest}?artifactType=${encodeURIComponent(SBOM)}`).expect(200);
    expect(res.headers['oci-filters-applied']).toBe('artifactType');
    expect(JSON.parse(res.text).manifests.map((entry: { digest: string }) => entry.digest)).toEqual([sha256(sbom)]);
    const none = await agent.get(`/v2/team/app/referrers/${subject.digest}?artifactType=application/vnd.none`).expect(200);
    expect(JSON.parse(none.text).manifests).toEqual([]);
  });

  it('an image manifest without artifactType is typed by its config; an index without one has none', async () => {
    const image = makeImage('typed-by-config', { subject: descriptor(OCI_MANIFEST, subject.manifest) });
    await pushImage(agent, 'team/app', image);
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [], subject: descriptor(OCI_MANIFEST, subject.manifest) }));
    await agent.put(`/v2/team/app/manifests/${sha256(index)}`).set('Content-Type', OCI_INDEX).send(index.toString()).expect(201);
    const body = JSON.parse((await agent.get(`/v2/team/app/referrers/${subject.digest}`).expect(200)).text);
    const byDigest = Object.fromEntries(body.manifests.map((entry: { digest: string }) => [entry.digest, entry]));
    expect(byDigest[image.digest]).toEqual({ mediaType: OCI_MANIFEST, digest: image.digest, size: image.manifest.length, artifactType: 'application/vnd.oci.image.config.v1+json' });
    expect(byDigest[sha256(index)]).toEqual({ mediaType: OCI_INDEX, digest: sha256(index), size: index.length });
  });

  it('is empty for an unknown digest or repository, 400 for a malformed digest', async () => {
    await pushReferrer('team/app', sbom);
    expect(JSON.parse((await agent.get(`/v2/team/app/referrers/${sha256('unknown')}`).expect(200)).text).manifests).toEqual([]);
    expect(JSON.parse((await agent.get(`/v2/team/other/referrers/${subject.digest}`).expect(200)).text).manifests).toEqual([]);
    expect((await agent.get('/v2/team/app/referrers/sha256:nothex').expect(400)).body.errors[0].code).toBe('DIGEST_INVALID');
  });

  it('deleting a referrer removes its entry; deleting the subject leaves the referrers listed', async () => {
    await pushImage(agent, 'team/app', subject, 'v1');
    await pushReferrer('team/app', sbom);
    await pushReferrer('team/app', signature);
    await agent.delete(`/v2/team/app/manifests/${sha256(sbom)}`).expect(202);
    let body = JSON.parse((await agent.get(`/v2/team/app/referrers/${subject.digest}`).expect(200)).text);
    expect(body.manifests.map((entry: { digest: string }) => entry.digest)).toEqual([sha256(signature)]);
    await agent.delete(`/v2/team/app/manifests/${subject.digest}`).expect(202);
    body = JSON.parse((await agent.get(`/v2/team/app/referrers/${subject.digest}`).expect(200)).text);
    expect(body.manifests.map((entry: { digest: string }) => entry.digest)).toEqual([sha256(signature)]);
  });
});
