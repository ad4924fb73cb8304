"""The web demo's static files (index.html, app.js, pocketgan.js, lib/), installed as
``pocketgan.web_demo`` so ``pocketgan serve-demo`` finds them; the server is
``pocketgan.web_demo_server``. See web_demo/README.md."""
