"""The address `make ui` prints: ``python -m ablations.tracking.ui URI PORT``.

It opens MLflow's UI on the most recently started ablation's runs in the view it saves
(grouped by arm, by task and arm over several tasks; see :mod:`ablations.tracking.view`), or on
the home page when the store has no ablation.
"""

from __future__ import annotations

import sys

from ablations.tracking.view import latest_ui_path


def main(argv: list[str] | None = None) -> int:
    uri, port = argv if argv is not None else sys.argv[1:]
    try:
        path = latest_ui_path(uri) or ""
    except Exception:  # noqa: BLE001 - the home page is the fallback; mlflow ui says what is wrong
        path = ""
    print(f"http://127.0.0.1:{port}/{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
