// Compile-time checks of tidewire.d.ts (tsc --noEmit in make binding-node):
// typed events as socket.io's, and calls that must not type-check.
import { createServer } from 'node:http'
import { Server, Socket } from '../../tidewire.js'

interface ClientToServer {
  chat: (text: string, ack: (status: 'ok' | 'refused') => void) => void
  typing: (room: string) => void
}
interface ServerToClient {
  said: (from: string, text: string) => void
  ask: (question: string, ack: (answer: number) => void) => void
}
interface Data {
  role: string
}

const io = new Server<ClientToServer, ServerToClient, {}, Data>({ port: 0, maxHttpBufferSize: 1000 })
io.on('connection', (socket: Socket<ClientToServer, ServerToClient, {}, Data>) => {
  const role: string = socket.data.role
  socket.on('chat', (text, ack) => {
    const t: string = text
    ack('ok')
    socket.to('room').emit('said', role, t)
  })
  socket.on('disconnect', (reason) => reason.toUpperCase())
  void socket.timeout(100).emitWithAck('ask', 'sum?').then((n) => n.toFixed())
  // @ts-expect-error: not an event the client sends
  socket.on('nope', () => {})
  // @ts-expect-error: wrong argument type
  socket.emit('said', 'ann', 42)
})
io.on('typing', (socket, room) => socket.join(room))
io.in('room').volatile.emit('said', 'server', 'hi')
void io.fetchSockets().then((sockets) => sockets.map((s) => s.data.role))
// @ts-expect-error: not an event the server sends
io.emit('chat', 'x', () => {})
// Broadcast acknowledgements, as socket.io's: one answer per recipient.
void io.timeout(500).to('room').emitWithAck('ask', 'sum?').then((answers) => answers.map((n) => n.toFixed()))
io.timeout(500).emit('ask', 'sum?', (err, answers) => answers.map((n) => (err ? 0 : n.toFixed())))
io.on('disconnecting', (socket, reason) => [...socket.rooms, reason])
// On the app's own http.Server, as socket.io.
const attached = new Server(createServer(), { path: '/rt' })
attached.httpServer?.listen(0)
// @ts-expect-error: attach takes a server or a port
attached.attach('nope')
// Dynamic namespaces and server-side events, as socket.io's.
const teams = io.of(/^\/team-\d+$/, (socket) => socket.join('members'))
const teamNames: string[] = [...teams.children].map((ns) => ns.name)
teams.to('members').emit('said', 'server', 'hi')
const byAuth = io.of((name, auth, next) => next(null, name.startsWith('/x') && auth.token === 't'))
void byAuth.fetchSockets().then((sockets) => sockets.length + teamNames.length)
const cluster = new Server<ClientToServer, ServerToClient, { hello: (n: number) => void }>()
cluster.serverSideEmit('hello', 1)
// @ts-expect-error: not a server-side event of this cluster
cluster.serverSideEmit('nope', 1)
cluster.serverSideEmit('load?', (err: Error | null, responses: any[]) => [err, responses])
void cluster.serverSideEmitWithAck('load?').then((answers) => answers.length)
cluster.onServerSideEmit('hello', (n: number) => n + 1)
// @ts-expect-error: a matcher is a RegExp or a function
io.of(42)
// socket.io's reading idioms.
const roomSize: number = io.sockets.adapter.rooms.get('room')?.size ?? 0
const someone = io.of('/').sockets.get('id')?.data.role
void [roomSize, someone]
