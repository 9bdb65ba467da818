import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { SERVER_NODE_FLAGS } from '../../../server/node-flags.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')

describe('SERVER_NODE_FLAGS', () => {
  it("are the node flags of package.json's start and serve scripts", () => {
    const scripts = (
      JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
        scripts: Record<string, string>
      }
    ).scripts
    for (const name of ['start', 'serve']) {
      const script = scripts[name] ?? ''
      expect(script).toContain(`node ${SERVER_NODE_FLAGS.join(' ')} dist/server/main.js serve`)
    }
  })
})
