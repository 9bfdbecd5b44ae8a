// The redis-adapter suite's behaviours with Tidewire's createShardedAdapter
// (Redis 7 sharded pub/sub): three nodes in each subscription mode.
import { adapterSuite } from './adapter-suite.mjs'

for (const mode of ['dynamic', 'static', 'dynamic-private']) {
  adapterSuite(`three socket.io servers with Tidewire's createShardedAdapter (${mode})`, [0, 1, 2].map(() => 'tidewire-sharded'), {
    sharded: true,
    adapterOpts: { subscriptionMode: mode },
  })
}
