// The product prices page (templates/admin/products/product/pricing_form.html): a live example
// for each meter, "12,500 units cost ...", asked of the server as the user types, so it is priced
// by products/pricing.py, the invoice's own rule, never by a copy of it in JavaScript.
(function () {
  "use strict";

  var FIELDS = [
    "price_per_unit",
    "tier_mode",
    "tiers",
    "package_size",
    "package_rounding",
    "minimum_amount",
    "maximum_amount",
  ];

  function Example(form, fieldset) {
    this.form = form;
    this.fieldset = fieldset;
    this.prefix = fieldset.getAttribute("data-prefix");
    this.output = fieldset.querySelector(".example-result");
    this.units = fieldset.querySelector(".example-units");
    this.sequence = 0;
    this.timer = null;
    var self = this;
    fieldset.addEventListener("input", function () { self.soon(); });
    fieldset.addEventListener("change", function () { self.soon(); });
    this.run();
  }

  Example.prototype.soon = function () {
    var self = this;
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(function () { self.run(); }, 200);
  };

  Example.prototype.body = function () {
    var pricing = {};
    for (var i = 0; i < FIELDS.length; i++) {
      var input = this.form.elements[this.prefix + "-" + FIELDS[i]];
      if (input) pricing[FIELDS[i]] = input.value;
    }
    return JSON.stringify({
      pricing: pricing,
      free_threshold: parseInt(this.fieldset.getAttribute("data-free-threshold"), 10) || 0,
      consumed: this.units.value.replace(/[,\s]/g, "") || "0",
      currency: this.form.getAttribute("data-currency"),
    });
  };

  Example.prototype.run = function () {
    var self = this;
    var sequence = ++this.sequence;
    this.output.setAttribute("data-state", "loading");
    fetch(this.form.getAttribute("data-example-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "X-CSRFToken": this.form.elements.csrfmiddlewaretoken.value,
      },
      body: this.body(),
    })
      .then(function (response) {
        return response.json().then(function (data) { return { ok: response.ok, data: data }; });
      })
      .then(function (answer) {
        if (sequence === self.sequence) self.show(answer.ok, answer.data);
      })
      .catch(function () {
        if (sequence !== self.sequence) return;
        self.output.setAttribute("data-state", "error");
        self.output.textContent = "The example could not be loaded; it retries on the next change.";
      });
  };

  Example.prototype.show = function (ok, data) {
    if (ok) {
      var text = data.text;
      if (data.tiers && data.tiers.length) {
        text += " — " + data.tiers.map(function (tier) {
          return tier.units + " at " + tier.unit_price +
            (tier.flat_fee ? " + " + tier.flat_fee + " flat" : "") + " = " + tier.amount;
        }).join("; ");
      }
      if (data.packages !== null) text += " — " + data.packages + " packages";
      this.output.setAttribute("data-state", "ok");
      this.output.textContent = text;
      return;
    }
    this.output.setAttribute("data-state", "invalid");
    this.output.textContent = (data.errors || []).map(function (error) {
      return (error.field ? error.field + ": " : "") + error.message;
    }).join("; ") || "Not a valid price.";
  };

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("pricing-form");
    if (!form) return;
    var fieldsets = form.querySelectorAll(".pricing-meter[data-prefix]");
    for (var i = 0; i < fieldsets.length; i++) new Example(form, fieldsets[i]);
  });
})();
