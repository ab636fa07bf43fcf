// The panel beside the plot, shared by the scripts that show something in it. Each owns one named
// section ("selection", "pinned", "neighbours", "duplicates", ...), set with panel.set(name, html) and
// shown in the order Python gives; with every section empty the panel shows its first text (the hint).
// A click on an element inside it carrying data-action="<name>" calls the handler a script registered
// with panel.on(name, (dataset) => ...): the panel's HTML is rewritten whenever a section changes, so
// handlers are found from the click's path rather than attached to elements.
//
// A function body (see map.js); Python passes `div` (the panel, a bokeh Div whose text is HTML: every
// value a script puts there goes through its esc()) and `order` (the sections' names, top to bottom).
//
//     panel.execute(cb_obj).then((sections) => sections.set("pinned", html))

class Panel {
  constructor(div, order) {
    this.div = div
    this.order = order
    this.hint = div.text
    this.sections = {}
    this.actions = {}
    this.listening = null
  }

  set(name, html) {
    if (html) this.sections[name] = html
    else delete this.sections[name]
    const names = [...this.order, ...Object.keys(this.sections).filter((n) => !this.order.includes(n))]
    const parts = names.filter((n) => this.sections[n]).map((n) => this.sections[n])
    this.div.text = parts.length ? parts.join("") : this.hint
    this.listen()
  }

  on(action, handler) {
    this.actions[action] = handler
  }

  // One click listener on the Div's element (its content sits in a shadow root; clicks come out of it
  // with their composed path).
  listen() {
    const view = globalThis.Bokeh?.index?.find_one(this.div)
    if (view == null || view.el === this.listening) return
    this.listening = view.el
    view.el.addEventListener("click", (ev) => {
      for (const el of ev.composedPath()) {
        if (el === view.el) break
        const action = el.dataset?.action
        if (action != null && this.actions[action] != null) {
          ev.preventDefault()
          this.actions[action](el.dataset, ev)
          return
        }
      }
    })
  }
}

// One per panel, made by whichever script asks first.
const panels = globalThis.photomap_panels ??= new WeakMap()
if (!panels.has(div)) panels.set(div, new Panel(div, order))
return panels.get(div)
