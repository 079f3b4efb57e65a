// /docs: Swagger UI, from the Python package swagger-ui-bundle-v2 (web/api_docs.py), on this server's
// OpenAPI document. Nothing is asked of any other server: no validator badge, no fonts.
(function () {
  var element = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: element.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
