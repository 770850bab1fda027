import express from 'express';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import supertest from 'supertest';
import { createRegistryRouter, MemoryStorage } from '../lib';
import { createRegistryUi } from '../lib/ui';

const UI_FOLDER = resolve(__dirname, '..', 'ui');

/** A host app: the registry at the root, the UI under /ui, and a host route of its own after both. */
function hostApp(options: Partial<Parameters<typeof createRegistryUi>[0]> = {}) {
  const registry = createRegistryRouter({ storage: new MemoryStorage() });
  const app = express();
  app.use(registry);
  app.use('/ui', createRegistryUi({ registry, ...options }));
  app.use((req, res) => {
    res.status(404).send(`host 404 ${req.method} ${req.originalUrl}`);
  });
  return app;
}

/** The JSON the page reads from its `ui-config` script element. */
function pageConfig(html: string): unknown {
  return JSON.parse(/<script type="application\/json" id="ui-config">(.*?)<\/script>/s.exec(html)![1]);
}

describe('createRegistryUi', () => {
  it('serves the page with its title and settings filled in, escaped', async () => {
    const title = 'Images </script><b> & "{{config}}"';
    const agent = supertest(hostApp({ title, readOnly: true, links: [{ href: '/admin', text: 'Admin' }] }));
    for (const path of ['/ui/', '/ui/index.html']) {
      const page = await agent.get(path).expect(200).expect('Content-Type', /text\/html/).expect('Cache-Control', 'no-cache');
      expect(page.text).toContain('<title>Images &lt;/script&gt;&lt;b&gt; &amp; &quot;{{config}}&quot;</title>');
      expect(page.text).not.toContain('{{title}}');
      expect(page.text).not.toContain('</script><b>');
      expect(pageConfig(page.text)).toEqual({ title, api: '', readOnly: true, links: [{ href: '/admin', text: 'Admin' }] });
    }
  });

  it('redirects the mount without its slash, keeping the query, so relative URLs resolve under it', async () => {
    const agent = supertest(hostApp());
    await agent.get('/ui').expect(301).expect('Location', '/ui/');
    await agent.get('/ui?repository=a/b&reference=v1').expect(301).expect('Location', '/ui/?repository=a/b&reference=v1');
  });

  it('serves every file of the ui folder as it is, with its type', async () => {
    const agent = supertest(hostApp());
    const files = readdirSync(join(UI_FOLDER, 'js')).map((name) => `js/${name}`);
    expect(files).toEqual(expect.arrayContaining(['js/app.js', 'js/api.js']));
    for (const file of [...files, 'style.css', 'favicon.svg', 'favicon.ico']) {
      const response = await agent.get(`/ui/${file}`).buffer(true).parse((res, done) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => done(null, Buffer.concat(chunks)));
      });
      expect([file, response.status]).toEqual([file, 200]);
      expect(Buffer.compare(response.body as Buffer, readFileSync(join(UI_FOLDER, file)))).toBe(0);
    }
    await agent.get('/ui/js/app.js').expect('Content-Type', /javascript/);
    await agent.get('/ui/style.css').expect('Content-Type', /text\/css/);
  });

  it('passes everything else on to the host app: other methods, unknown files', async () => {
    const agent = supertest(hostApp());
    expect((await agent.post('/ui/').expect(404)).text).toBe('host 404 POST /ui/');
    expect((await agent.get('/ui/nothing.js').expect(404)).text).toBe('host 404 GET /ui/nothing.js');
    expect((await agent.get('/elsewhere').expect(404)).text).toBe('host 404 GET /elsewhere');
    // The registry's own API is untouched beside it.
    await agent.get('/v2/').expect(200);
  });

  it('takes a registry mounted under a prefix as its URL path, and refuses anything else', async () => {
    const app = express();
    app.use('/ui', createRegistryUi({ registry: '/registry/' }));
    expect(pageConfig((await supertest(app).get('/ui/').expect(200)).text)).toMatchObject({ api: '/registry' });
    expect(() => createRegistryUi({ registry: 'http://elsewhere.example/' })).toThrow(/URL path starting with "\/"/);
  });
});
