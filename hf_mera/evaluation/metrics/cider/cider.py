"""CIDEr-D as a local 🤗 Evaluate metric module (no Java, no hub download).

Load it by path, which works offline (``evaluate.load("cider")`` would look on the hub):

```python
import evaluate
from hf_mera.evaluation import CIDER_METRIC_PATH

cider = evaluate.load(CIDER_METRIC_PATH)
cider.compute(predictions=["a dog runs"], references=[["a dog is running", "a running dog"]])
```

The arithmetic lives in `hf_mera.evaluation.cider.compute_cider`; this file only adapts it to the
`evaluate.Metric` interface, so both give identical numbers.
"""

import datasets
import evaluate

from hf_mera.evaluation.cider import compute_cider

_DESCRIPTION = """\
CIDEr-D (Vedantam et al., 2015) exactly as pycocoevalcap's `Cider` computes it (n = 4, sigma = 6,
clipping, Gaussian length penalty, x10), reported x100 as in captioning papers. Captions are
PTB-tokenised in pure Python the way pycocoevalcap's Java PTBTokenizer does. IDF is taken from the
references of all items passed to one `compute` call, so score a whole test set at once.
"""

_CITATION = """\
@inproceedings{vedantam2015cider,
  title={CIDEr: Consensus-based Image Description Evaluation},
  author={Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi},
  booktitle={CVPR},
  year={2015}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one generated caption per item.
    references (`list[list[str]]`): all reference captions of each item.
    tokenize (`bool`, defaults to `True`): PTB-tokenise first; `False` for pre-tokenised text.
Returns:
    cider (`float`): corpus CIDEr-D x100.
    cider_per_item (`list[float]`): CIDEr-D x100 of each prediction.
Examples:
    >>> cider = evaluate.load(path_to_this_folder)
    >>> cider.compute(predictions=["a dog"], references=[["a dog", "the dog"]])["cider"]
    0.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Cider(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.List(datasets.Value("string")),
                }
            ),
            reference_urls=["https://github.com/salaniz/pycocoevalcap"],
        )

    def _compute(self, predictions, references, tokenize: bool = True):
        result = compute_cider(list(predictions), [list(refs) for refs in references], tokenize=tokenize)
        return {"cider": result.score, "cider_per_item": result.per_item}
