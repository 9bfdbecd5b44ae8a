// The redis-adapter suite's behaviours on three socket.io servers over one
// redis-server: all with Tidewire's createAdapter, then mixed with the
// official @socket.io/redis-adapter (Tidewire asking official nodes, and
// official nodes asking Tidewire ones).
import { adapterSuite } from './adapter-suite.mjs'

adapterSuite('three socket.io servers with Tidewire\'s createAdapter', ['tidewire', 'tidewire', 'tidewire'])
adapterSuite('a Tidewire node asking two official @socket.io/redis-adapter nodes', ['tidewire', 'official', 'tidewire'])
adapterSuite('an official node asking Tidewire nodes', ['official', 'tidewire', 'tidewire'])
