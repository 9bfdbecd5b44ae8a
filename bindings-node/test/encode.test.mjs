// The arguments' encoding every native crossing uses (tidewire.js's
// `encode`): JSON text with socket.io-parser's placeholders for binary
// parts; plain JSON.stringify when nothing needs its replacer.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'

const { encode, decode } = createRequire(import.meta.url)('../tidewire.js')

test('plain values: JSON as JSON.stringify writes it', () => {
  const args = ['a', 1, 2.5, null, true, { b: [null, 'x'], c: {} }, new Date(0), new Map([[1, 2]])]
  assert.deepEqual(encode(args), { json: JSON.stringify(args), attachments: [] })
  // undefined in an object is left out, in an array it is null: as socket.io sends them.
  assert.equal(encode([{ u: undefined }, [undefined]]).json, '[{},[null]]')
})

test('binary parts at any depth become placeholders, in order, and come back as Buffers', () => {
  const args = [{ x: [[{ y: new Uint8Array([1, 2]) }]] }, Buffer.from([3]), new ArrayBuffer(1)]
  const out = encode(args)
  assert.equal(out.json, '[{"x":[[{"y":{"_placeholder":true,"num":0}}]]},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]')
  assert.deepEqual(out.attachments.map((b) => [...b]), [[1, 2], [3], [0]])
  const back = decode(out.json, out.attachments)
  assert.deepEqual([...back[0].x[0][0].y], [1, 2])
  assert.ok(Buffer.isBuffer(back[1]))
  // Deeper than the plain check looks (40 levels): the replacer still finds it.
  let deep = Buffer.from([9])
  for (let i = 0; i < 40; i++) deep = [deep]
  const d = encode([deep])
  assert.deepEqual(d.attachments.map((b) => [...b]), [[9]])
  let plain = 'leaf'
  for (let i = 0; i < 40; i++) plain = { p: plain }
  assert.deepEqual(encode([plain]), { json: JSON.stringify([plain]), attachments: [] })
})

test('what JSON cannot carry is refused with ERR_INVALID_ARG, at any depth', () => {
  assert.throws(() => encode([() => 1]), { code: 'ERR_INVALID_ARG', message: /a function cannot be sent/ })
  assert.throws(() => encode([{ a: [{ f() {} }] }]), { code: 'ERR_INVALID_ARG', message: /a function cannot be sent/ })
  assert.throws(() => encode([1n]), { code: 'ERR_INVALID_ARG' })
  const cyclic = { a: 1 }
  cyclic.self = cyclic
  assert.throws(() => encode([cyclic]), { code: 'ERR_INVALID_ARG' })
})
