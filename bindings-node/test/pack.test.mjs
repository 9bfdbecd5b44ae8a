// Packaging: `npm pack` gives a tarball that installs into a fresh project
// (no link to this folder) and runs there: an app on the stock socket.io
// Server, bound to Tidewire's Engine with Tidewire's adapter, imported as
// an app imports the package (CommonJS and ES module entry points), and
// npm socket.io-client round-trips an acked event through it. Packages
// come from npm's cache (filled by this folder's `npm ci`), so the test
// needs no network when that cache is warm.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { once } from 'node:events'

const here = dirname(dirname(fileURLToPath(import.meta.url)))
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
const versions = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8')).devDependencies

const app = `
const http = require('node:http')
const { Server } = require('socket.io')
const { io: connect } = require('socket.io-client')
const { Engine, createAdapter } = require('tidewire/socket.io')

const httpServer = http.createServer((req, res) => res.end('app'))
const io = new Server({ adapter: createAdapter() })
const engine = new Engine()
engine.attach(httpServer, { path: '/socket.io/' })
io.bind(engine)
io.on('connection', (socket) => {
  socket.on('echo', (value, ack) => ack({ value, sid: socket.id }))
})
httpServer.listen(0, '127.0.0.1', async () => {
  const url = 'http://127.0.0.1:' + httpServer.address().port
  const client = connect(url, { transports: ['polling', 'websocket'] })
  const answer = await client.timeout(10000).emitWithAck('echo', 'hi')
  await new Promise((resolve) =>
    client.io.engine.transport.name === 'websocket' ? resolve() : client.io.engine.once('upgrade', resolve))
  const upgraded = client.io.engine.transport.name
  const again = await client.timeout(10000).emitWithAck('echo', 'again')
  const page = await (await fetch(url + '/')).text()
  client.close()
  io.close()
  console.log(JSON.stringify({ value: answer.value, again: again.value, sid: typeof answer.sid, page, upgraded }))
  process.exit(0)
})
`

const esm = `
import { Engine, createAdapter, createShardedAdapter } from 'tidewire/socket.io'
import * as native from 'tidewire'
console.log(JSON.stringify({
  engine: typeof Engine, adapter: typeof createAdapter, sharded: typeof createShardedAdapter,
  server: typeof native.Server,
}))
`

function run(cwd, file) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
    once(child, 'exit').then(([code]) => {
      clearTimeout(timer)
      if (code === 0) resolve(out.trim().split('\n').pop())
      else reject(new Error(`${file} exited with ${code}: ${err}`))
    })
  })
}

test('npm pack gives a tarball that installs into a fresh project and runs', { timeout: 240_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tidewire-pack-'))
  try {
    execFileSync(npm, ['pack', '--silent', '--pack-destination', dir], { cwd: here, stdio: ['ignore', 'pipe', 'inherit'] })
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))
    assert.ok(tarball, 'npm pack wrote no tarball')
    const listed = execFileSync('tar', ['-tzf', join(dir, tarball)], { encoding: 'utf8' }).split('\n')
    for (const file of ['package/socket.io.js', 'package/socket.io.mjs', 'package/socket.io.d.ts', 'package/index.js']) {
      assert.ok(listed.includes(file), `${file} is not in the tarball`)
    }
    assert.ok(listed.some((f) => /^package\/tidewire\..*\.node$/.test(f)), 'no native addon in the tarball')
    assert.ok(!listed.some((f) => f.startsWith('package/test/') || f.startsWith('package/src/')), 'tests or sources packed')

    const project = join(dir, 'app')
    execFileSync('mkdir', ['-p', project])
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'fresh-app', private: true, version: '1.0.0' }))
    execFileSync(
      npm,
      ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', join(dir, tarball),
        `socket.io@${versions['socket.io']}`, `socket.io-client@${versions['socket.io-client']}`],
      { cwd: project, stdio: ['ignore', 'ignore', 'inherit'] },
    )
    writeFileSync(join(project, 'app.cjs'), app)
    writeFileSync(join(project, 'check.mjs'), esm)

    const result = JSON.parse(await run(project, 'app.cjs'))
    assert.equal(result.value, 'hi')
    assert.equal(result.again, 'again', 'an acked event over the upgraded WebSocket')
    assert.equal(result.sid, 'string')
    assert.equal(result.page, 'app', 'the app keeps its other routes on the same port')
    assert.equal(result.upgraded, 'websocket')
    assert.deepEqual(JSON.parse(await run(project, 'check.mjs')), {
      engine: 'function', adapter: 'function', sharded: 'function', server: 'function',
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
