"""Entry point of `queuewatch dashboard`: Streamlit's own CLI, with page routing left to app.py.

Streamlit routes URLs straight to files under pages/ until some run has called st.navigation. app.py calls
it on every run and lists only the login page until an admin is logged in, so that routing is switched off
from the start (each page also refuses to run without a session).
"""
from __future__ import annotations

import sys

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web.cli import main

if __name__ == "__main__":
    PagesManager.uses_pages_directory = False
    sys.exit(main())
