/* The printable invoice's Print button (a static file: the pages allow no inline script). */
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("print-button");
    if (button) button.addEventListener("click", function () { window.print(); });
  });
})();
