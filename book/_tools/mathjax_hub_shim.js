// The Jupyter widget manager (@jupyter-widgets/html-manager) typesets widget labels with
// the MathJax 2 call MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book loads
// MathJax 3, which has no Hub. This shim gives every object assigned to window.MathJax (the
// configuration, then MathJax 3 itself) a hidden Hub whose Queue forwards to MathJax 3's
// typesetPromise. Before MathJax has started there is nothing to do: its start-up pass
// typesets the whole page, widget labels included.
(function () {
  "use strict";
  var current = window.MathJax;
  function queue(job) {
    var mj = current;
    var element = job && job[2];
    if (mj && typeof mj.typesetPromise === "function" && mj.startup && mj.startup.promise) {
      mj.startup.promise
        .then(function () { return mj.typesetPromise(element && element.nodeType ? [element] : undefined); })
        .catch(function () {});
    }
  }
  function withHub(value) {
    if (value && typeof value === "object" && !Object.prototype.hasOwnProperty.call(value, "Hub")) {
      Object.defineProperty(value, "Hub", {
        value: { Queue: queue }, enumerable: false, configurable: true, writable: true,
      });
    }
    return value;
  }
  withHub(current);
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    enumerable: true,
    get: function () { return current; },
    set: function (value) { current = withHub(value); },
  });
})();
