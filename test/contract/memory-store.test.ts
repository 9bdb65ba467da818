// Runs the Store contract against the in-memory store.

import { createMemoryStore } from '../../server/persistence/memory-store.js'
import { runStoreContract } from './store-contract.js'

runStoreContract('memory', async () => {
  const store = createMemoryStore()
  return { store, cleanup: () => store.close() }
})
