"""Where the experiment scripts leave their figures: a Markdown file (also printed) and a
JSON file of the raw rows beside it."""
import json
import os

import numpy as np


def mean_std(values, scale: float = 1.0, digits: int = 3) -> str:
    """``"mean ± std"`` of ``values`` times ``scale``; std is the sample standard deviation
    (ddof 1; 0 for a single value)."""
    values = scale * np.asarray(values, np.float64)
    std = values.std(ddof=1) if values.size > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {std:.{digits}f}"


def write_results(markdown_path: str, text: str, doc: dict) -> None:
    """Prints ``text``, writes it to ``markdown_path`` and ``doc`` to the same path with
    ``.json`` for ``.md``."""
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(markdown_path)), exist_ok=True)
    with open(markdown_path, "w") as f:
        f.write(text)
    with open(os.path.splitext(markdown_path)[0] + ".json", "w") as f:
        json.dump(doc, f, indent=2)
