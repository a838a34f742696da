// The checkout page: with a payment provider, the card typed into Stripe.js's card element is
// confirmed as the session's SetupIntent before the form is sent; the server then asks Stripe
// which card was saved (it never takes the browser's word for it). Without a provider the form
// is sent as it is.
(function () {
  "use strict";
  var form = document.getElementById("checkout-form");
  var config = JSON.parse(document.getElementById("checkout-config").textContent);
  var button = document.getElementById("pay");
  var sent = false;
  if (!config.publishable_key) {
    form.addEventListener("submit", function (event) {
      if (sent) { event.preventDefault(); return; } // a double click sends one form
      sent = true;
      button.disabled = true;
    });
    return;
  }
  var stripe = Stripe(config.publishable_key);
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var errorLine = document.getElementById("card-error");

  function value(name) {
    var input = document.getElementById("id_" + name);
    if (!input) { return undefined; }
    return (input.value !== undefined ? input.value : input.textContent).trim() || undefined;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (sent) { return; }
    sent = true;
    button.disabled = true;
    errorLine.textContent = "";
    var details = { name: value("cardholder_name") || value("name"), email: value("email") };
    stripe.confirmCardSetup(config.client_secret, {
      payment_method: { card: card, billing_details: details }
    }).then(function (result) {
      var error = result.error;
      // Confirmed already (a reload after the card was saved): the server checks it.
      if (error && error.code !== "setup_intent_unexpected_state") {
        errorLine.textContent = error.message || "The card was not accepted.";
        sent = false;
        button.disabled = false;
        return;
      }
      HTMLFormElement.prototype.submit.call(form);
    });
  });
})();
