// Runs test/helpers/client-device.ts as a child process (node-script.ts) and returns its report.

import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { DeviceReport, DeviceTask } from './client-device.js'
import { nodeScript } from './node-script.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

/**
 * Runs one device task in a new process; resolves with its report once it has exited on its own.
 * Rejects on a non-zero exit, or kills it (SIGKILL) and rejects after `timeoutMs`.
 */
export function runDevice(task: DeviceTask, timeoutMs = 30_000): Promise<DeviceReport> {
  const child = spawn(
    process.execPath,
    [...nodeScript('test/helpers/client-device.ts'), JSON.stringify(task)],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
  })
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`device did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`))
    }, timeoutMs)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      if (code !== 0) {
        reject(new Error(`device exited with ${code ?? signal}\nstdout: ${stdout}\nstderr: ${stderr}`))
        return
      }
      const last = stdout.trim().split('\n').at(-1) ?? ''
      try {
        resolve(JSON.parse(last) as DeviceReport)
      } catch {
        reject(new Error(`device printed no report\nstdout: ${stdout}\nstderr: ${stderr}`))
      }
    })
  })
}
