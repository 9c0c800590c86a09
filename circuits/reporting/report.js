/* circuits report: draws the report's Vega-Lite views into the elements marked data-view.
   Each view's specification, data included, is in the report's JSON block; the drawn Vega
   views are kept in root.circuitsViews (by name) and each element gets data-ready="true". */
function circuitsReport(root) {
  "use strict";
  var payload = JSON.parse(root.querySelector("script.circuits-data").textContent);
  var options = { renderer: "svg", actions: false, mode: "vega-lite" };
  root.circuitsViews = {};
  root.querySelectorAll("[data-view]").forEach(function (element) {
    var name = element.getAttribute("data-view");
    var spec = payload.specs[name];
    if (!spec) { return; }
    vegaEmbed(element, spec, options).then(function (result) {
      root.circuitsViews[name] = result.view;
      element.setAttribute("data-ready", "true");
    }).catch(function (error) {
      element.textContent = "This view could not be drawn: " + error;
      element.setAttribute("data-ready", "error");
      console.error(error);
    });
  });
}
