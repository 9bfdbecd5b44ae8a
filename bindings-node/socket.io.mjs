// `tidewire/socket.io` as an ES module (the CommonJS entry re-exported).
import cjs from './socket.io.js'

export const { Engine, EngineSocket, createAdapter, createShardedAdapter } = cjs
export default cjs
