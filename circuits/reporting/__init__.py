"""The HTML report of a model: one self-contained page that works offline.

:func:`report` gathers the model's card, circuit diagram, heads with their detected roles and
scores, composition scores against the random baseline, the attention patterns of a sequence,
the top path and QK terms at a position and the certificate where there is one; the
:class:`Report` it returns saves the page (:meth:`Report.save`) and shows itself in Jupyter.
The interactive views use Vega-Lite, shipped inside the package and inlined into the page.
"""

from .report import Report, report

__all__ = ["Report", "report"]
