// The redis-adapter suite's behaviours with Tidewire's createShardedAdapter
// (Redis 7 sharded pub/sub): three nodes in each subscription mode.
import { adapterSuite } from './adapter-suite.mjs'

for (const mode of ['dynamic', 'static', 'dynamic-private']) {
  adapterSuite(`three socket.io servers with Tidewire's createShardedAdapter (${mode})`, [0, 1, 2].map(() => 'tidewire-sharded'), {
    sharded: true,
    adapterOpts: { subscriptionMode: mode },
  })
}

// Mixed with official sharded nodes (which count nodes by their heartbeats:
// Tidewire's link beats as they do).
adapterSuite('a Tidewire sharded node asking official sharded nodes', ['tidewire-sharded', 'official-sharded', 'tidewire-sharded'], {
  sharded: true,
})
adapterSuite('an official sharded node asking Tidewire sharded nodes', ['official-sharded', 'tidewire-sharded', 'tidewire-sharded'], {
  sharded: true,
})
