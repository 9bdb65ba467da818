// The turns' shared surface: the model, the HTTP API types and the document entries devices read.

export * from './api.js'
export * from './document.js'
export * from './turn.js'
