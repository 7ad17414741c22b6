"""What rvi knows by name: datasets, architectures, attacks, threat models, controls, optimizers,
and each dataset's usual budgets, image shape and eps grid.

A leaf module of constants, so that the configs (layer 3) can check names and fill defaults
without importing the layers that use them; :mod:`rvi._core.checks` holds the checks.
Attribution methods and metrics are not listed here: they are objects in
:mod:`rvi._core.registry`, registered where their code is.
"""

#: Dataset names understood by :func:`rvi.load_dataset`.
DATASETS = ("mnist", "mnist-5k", "fashion-mnist", "cifar10", "synthetic")
#: Architecture names understood by :func:`rvi.build_model`.
MODELS = ("lenet", "madry-cnn", "resnet18")
#: Controls a benchmark can run (``mechanism``: the first layer's threshold channels and the
#: map's mass through them, :mod:`rvi.metrics.mechanism`).
CONTROLS = ("random_weights", "image", "edge", "noise", "cascading", "independent", "mechanism")
#: Granularities of the layer randomization steps (:func:`rvi.scoring.controls.randomization_steps`).
RANDOMIZATION_STEPS = ("auto", "layers", "blocks")
ATTACKS = ("fgsm", "pgd", "autoattack")
#: Training eps grids of the sweep per dataset (MNIST: the seed study's 0.3 and around it;
#: Fashion-MNIST's usual budget is 0.1); :data:`rvi.studies.sweep.EPS_GRIDS`.
EPS_GRIDS = {
    "mnist": (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4),
    "mnist-5k": (0.0, 0.1, 0.2, 0.3),
    "fashion-mnist": (0.0, 0.05, 0.1, 0.15, 0.2),
    "synthetic": (0.0, 0.3),
}
#: The L-inf budget and PGD step, (eps, alpha), each dataset is usually attacked and trained at:
#: the defaults of a study's attacks (``BenchmarkConfig``, ``rvi train``, ``rvi evaluate``).
#: MNIST: Madry et al.'s 0.3 with step 0.1; Fashion-MNIST 0.1 with step eps/3; CIFAR-10 8/255
#: with step 2/255.
DATASET_ATTACK = {"mnist": (0.3, 0.1), "mnist-5k": (0.3, 0.1), "fashion-mnist": (0.1, 0.0333333333),
                  "cifar10": (8 / 255, 2 / 255), "synthetic": (0.3, 0.1)}
#: The image shape (C, H, W) of each named dataset's images (synthetic: rvi's test data, left
#: out); ``rvi compare --images`` infers a dataset's defaults from it.
IMAGE_SHAPES = {"mnist": (1, 28, 28), "mnist-5k": (1, 28, 28), "fashion-mnist": (1, 28, 28),
                "cifar10": (3, 32, 32)}
#: Threat models: the norm that bounds a perturbation (torchattacks PGD/FGSM for L-inf, PGDL2 for
#: L2, AutoAttack in either).
NORMS = ("Linf", "L2")
#: The L2 budget (eps) each dataset is usually trained and attacked at, in [0, 1] pixel units
#: (:func:`rvi.config.dataset_attack` steps eps / 4): MNIST 2.0 (Maini, Wong & Kolter 2020,
#: "Adversarial robustness against the union of multiple perturbation models", ICML, whose MNIST
#: budgets are L-inf 0.3, L2 2.0 and L1 10, after Tramer & Boneh 2019); CIFAR-10 0.5
#: (RobustBench's L2 leaderboard, Croce et al. 2021). Fashion-MNIST has no settled L2 budget:
#: give eps.
DATASET_L2_EPS = {"mnist": 2.0, "mnist-5k": 2.0, "cifar10": 0.5, "synthetic": 2.0}
#: The eps each dataset is usually attacked at (the sweep's adversarial inputs and robustness
#: axis); :data:`rvi.studies.sweep.REFERENCE_EPS`.
REFERENCE_EPS = {name: eps for name, (eps, _) in DATASET_ATTACK.items()}
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "onecycle", "cosine")
