// Runs in the page's main world right after tracker.js: document.currentScript is the browser's again
// (the tracker's read already removed prelude.js's; this is for the case it did not read it).
delete document.currentScript
