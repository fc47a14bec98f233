// Runs in <head> before the first paint: apply the theme the user picked (localStorage), else follow the OS.
(function () {
  try {
    var theme = localStorage.getItem("homepage-theme");
    if (theme === "light" || theme === "dark") document.documentElement.setAttribute("data-theme", theme);
  } catch (e) { /* storage disabled: the OS preference applies */ }
})();
