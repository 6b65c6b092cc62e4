"use strict";
// Loaded by /docs (service/routes/docs.py). A file, not an inline script, so the page's CSP can say
// script-src 'self'. openapi.json is relative to the page, so the docs work behind a path prefix too.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
