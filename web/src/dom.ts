// A tiny DOM helper: create elements with attributes, properties and children in one call.
// The app's only "framework"; it owns no state.

type Child = Node | string | null | undefined | false
type Attributes = Record<string, string | number | boolean | undefined | EventListener>

/**
 * Creates an element. `on*` keys with a function become event listeners; `true` sets a boolean
 * attribute, `false`/`undefined` leaves it out; everything else is an attribute.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (typeof value === 'function') element.addEventListener(name.slice(2).toLowerCase(), value)
    else if (value === true) element.setAttribute(name, '')
    else if (value !== undefined && value !== false) element.setAttribute(name, String(value))
  }
  append(element, ...children)
  return element
}

/** Appends children, skipping empty ones. */
export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    parent.appendChild(typeof child === 'string' ? document.createTextNode(child) : child)
  }
}

/** Sets an element's text only when it changed (keeps selection and avoids layout work). */
export function setText(element: Element, text: string): void {
  if (element.textContent !== text) element.textContent = text
}

/** A short local time, e.g. 14:02:03. */
export function formatTime(ms: number): string {
  return new Date(ms).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' })
}
