"""Evaluation for modality-incremental continual learning: the paper's metrics, judges, tables and plots.

- captions: `compute_cider` (CIDEr-D ×100, equal to pycocoevalcap, no Java; `ptb_tokenize`), also as a
  local 🤗 Evaluate module at `CIDER_METRIC_PATH`;
- questions: `qa_accuracy` with a `QAJudge` (`ExactMatchJudge`, or the paper's `OpenAIJudge`; by name in
  `JUDGES`), and
  `vqa_accuracy` for datasets with ten annotator answers per question (OK-VQA);
- generation: `generate_predictions`, `evaluate_task`;
- continual-learning metrics (section 5.1): `relative_gain`, `backward_relative_gain`,
  `forward_relative_gain`, `summarize_over_stages`, collected per run in `RunScores`;
- reports: `write_report` (results.json, markdown tables shaped like Tables 2, 3, 11, 12, Figures 3, 4),
  efficiency records (Table 6) and `measure`.

Importing this package imports neither torch nor matplotlib; the functions that need them import
them when called.
"""

from pathlib import Path

from .answers import exact_match, normalize_answer
from .cider import CiderResult, compute_cider
from .efficiency import EfficiencyRecord, Measurement, measure, render_efficiency_table
from .generation import generate_predictions, prompt_messages
from .judge_prompt import (
    JUDGE_SYSTEM_PROMPT,
    JUDGE_USER_PROMPT_TEMPLATE,
    build_judge_messages,
    parse_judge_response,
)
from .judge_registry import JUDGES
from .judges import ExactMatchJudge, OpenAIJudge, QAJudge, Verdict
from .qa import AccuracyResult, qa_accuracy
from .relative_gain import (
    MeanStd,
    backward_relative_gain,
    forward_relative_gain,
    mean_over_orders,
    relative_gain,
    summarize_over_stages,
)
from .reports import (
    backward_summary_table,
    cross_modal_table,
    plot_relative_gain,
    raw_scores_tables,
    stagewise_table,
    write_report,
)
from .run_scores import RunScores
from .tasks import METRICS, TASK_METRICS, TaskResult, evaluate_task, evaluate_tasks, score_predictions
from .tokenization import PTB_PUNCTUATIONS, ptb_tokenize
from .vqa import VQAAccuracyResult, normalize_vqa_answer, vqa_accuracy, vqa_item_accuracy

# Folder of the local 🤗 Evaluate CIDEr module: `evaluate.load(CIDER_METRIC_PATH)` works offline.
CIDER_METRIC_PATH = str(Path(__file__).parent / "metrics" / "cider")

__all__ = [
    "CIDER_METRIC_PATH",
    "JUDGE_SYSTEM_PROMPT",
    "JUDGE_USER_PROMPT_TEMPLATE",
    "JUDGES",
    "METRICS",
    "PTB_PUNCTUATIONS",
    "TASK_METRICS",
    "AccuracyResult",
    "CiderResult",
    "EfficiencyRecord",
    "ExactMatchJudge",
    "MeanStd",
    "Measurement",
    "OpenAIJudge",
    "QAJudge",
    "RunScores",
    "TaskResult",
    "VQAAccuracyResult",
    "Verdict",
    "backward_relative_gain",
    "backward_summary_table",
    "build_judge_messages",
    "compute_cider",
    "cross_modal_table",
    "evaluate_task",
    "evaluate_tasks",
    "exact_match",
    "forward_relative_gain",
    "generate_predictions",
    "mean_over_orders",
    "measure",
    "normalize_answer",
    "normalize_vqa_answer",
    "parse_judge_response",
    "plot_relative_gain",
    "prompt_messages",
    "ptb_tokenize",
    "qa_accuracy",
    "raw_scores_tables",
    "relative_gain",
    "render_efficiency_table",
    "score_predictions",
    "stagewise_table",
    "summarize_over_stages",
    "vqa_accuracy",
    "vqa_item_accuracy",
    "write_report",
]
