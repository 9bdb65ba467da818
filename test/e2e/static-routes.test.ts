// Serving the built web app: the redirect, content types, cache headers, and no way out of the
// directory. A real server on 127.0.0.1 port 0; needs no browser.

import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_CONFIG } from '../../server/config.js'
import { contentTypeOf, resolveInside } from '../../server/http/static-routes.js'
import { type SyncServer, startSyncServer } from '../../server/sync-server.js'

let root: string
let webDir: string
let server: SyncServer
const get = (urlPath: string) => fetch(`http://127.0.0.1:${server.port}${urlPath}`, { redirect: 'manual' })

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'colloquy-static-'))
  webDir = path.join(root, 'web')
  await mkdir(webDir)
  await writeFile(path.join(webDir, 'index.html'), '<!doctype html><title>app</title>')
  await writeFile(path.join(webDir, 'main-ABCDEFGH.js'), 'console.log(1)')
  await writeFile(path.join(root, 'secret.txt'), 'not for the web')
  server = await startSyncServer({
    config: { ...DEFAULT_CONFIG, port: 0, store: 'memory', webDir, logLevel: 'silent' },
  })
})

afterAll(async () => {
  await server.close()
  await rm(root, { recursive: true, force: true })
})

describe('web app routes', () => {
  it('redirects / to /app/ and answers index.html at /app and /app/ without long caching', async () => {
    const home = await get('/')
    expect(home.status).toBe(302)
    expect(home.headers.get('location')).toBe('/app/')
    for (const urlPath of ['/app', '/app/', '/app/index.html']) {
      const page = await get(urlPath)
      expect(page.status).toBe(200)
      expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8')
      expect(page.headers.get('cache-control')).toBe('no-cache')
      expect(await page.text()).toContain('<title>app</title>')
    }
  })

  it('serves hashed bundles with their content type, nosniff and an immutable cache', async () => {
    const script = await get('/app/main-ABCDEFGH.js')
    expect(script.status).toBe(200)
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    expect(script.headers.get('x-content-type-options')).toBe('nosniff')
    expect(script.headers.get('cache-control')).toBe('public, max-age=31536000, immutable')
  })

  it('never serves a file outside the directory, and 404s a missing one', async () => {
    for (const urlPath of ['/app/..%2Fsecret.txt', '/app/%2E%2E%2Fsecret.txt', '/app/missing.js']) {
      const response = await get(urlPath)
      expect(response.status).toBe(404)
      expect(await response.text()).not.toContain('not for the web')
    }
    expect(resolveInside(webDir, '../secret.txt')).toBeUndefined()
    expect(resolveInside(webDir, '..')).toBeUndefined()
    expect(resolveInside(webDir, '/etc/passwd')).toBeUndefined()
    expect(resolveInside(webDir, 'a\0b')).toBeUndefined()
    expect(resolveInside(webDir, 'index.html')).toBe(path.join(webDir, 'index.html'))
    expect(contentTypeOf('x.css')).toBe('text/css; charset=utf-8')
    expect(contentTypeOf('x.bin')).toBe('application/octet-stream')
  })
})
