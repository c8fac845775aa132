// Runs in the page's main world right after tracker.js: document.currentScript is the browser's again.
delete document.currentScript
