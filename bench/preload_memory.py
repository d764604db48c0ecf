"""`preload: true` (issue 15): memory per child and spawn time, with and without a zygote.

    .venv/bin/python bench/preload_memory.py [--children 8] [--jobs 25] [--rounds 3]

One master runs seven programs on the same Django app (django.contrib admin, auth,
sessions, messages and a small `shop` app with models), each with N children that then
run --jobs jobs each (a model instance, a ModelForm's validation, a template render):

- plain: `setup: django:setup`, no preload: each child imports the app after its fork;
- preload: a zygote imports it once, warms it (master/warm.py) and fills its allocator's
  holes (master/holes.py) before it forks: what `preload: true` does;
- before: preload without warming nor filling (the zygote as it was before them);
- nowarm, nofill, nofreeze: preload without one step each (SUPERVISOR_Q_PRELOAD_WARM,
  _FILL, _FREEZE = 0);
- warmed: preload with a `setup:` hook that also runs a job's one-time work itself.

The headline is the median USS (psutil memory_full_info().uss: the pages only that child
holds) per child after the jobs, and its ratio to plain in the same run (target <= 25 %);
then the same once booted, and the spawn time per child (scale N -> N+4 until all are
running, best of --rounds rounds), with the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor_q.jobs.registry import dispatch  # noqa: E402
from supervisor_q.queue.server import RedisServer  # noqa: E402
from tests.helpers import wait_until  # noqa: E402
from tests.masters import Master  # noqa: E402

FILES = {
    "benchsite/__init__.py": "",
    "benchsite/settings.py": """\
        SECRET_KEY = "bench"
        INSTALLED_APPS = ["django.contrib.admin", "django.contrib.auth",
                          "django.contrib.contenttypes", "django.contrib.sessions",
                          "django.contrib.messages", "shop"]
        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                                 "NAME": ":memory:"}}
        TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates",
                      "APP_DIRS": True, "OPTIONS": {}}]
        USE_TZ = True
        """,
    "shop/__init__.py": "",
    "shop/models.py": """\
        from django.contrib.auth.models import User
        from django.db import models

        class Customer(models.Model):
            user = models.OneToOneField(User, on_delete=models.CASCADE)
            name = models.CharField(max_length=100)

        class Product(models.Model):
            title = models.CharField(max_length=200)
            price = models.DecimalField(max_digits=9, decimal_places=2)

        class Order(models.Model):
            customer = models.ForeignKey(Customer, on_delete=models.CASCADE)
            products = models.ManyToManyField(Product)
            created = models.DateTimeField(auto_now_add=True)
        """,
    "shop/admin.py": """\
        from django.contrib import admin
        from shop.models import Customer, Order, Product
        admin.site.register([Customer, Order, Product])
        """,
    "shop_warm.py": """\
        def setup() -> None:
            \"\"\"django.setup(), then once what every job does first (the template
            engine, translations, a form's validation): done in the zygote, shared.\"\"\"
            import django
            django.setup()
            from decimal import Decimal
            from django import forms
            from django.template import Context, Template
            from shop.models import Product

            class WarmForm(forms.ModelForm):
                class Meta:
                    model = Product
                    fields = ["title", "price"]

            product = Product(title="warm", price=Decimal("1.00"))
            WarmForm(data={"title": "warm", "price": "1.00"}).is_valid()
            Template("{{ p.title }} {{ p.price }}").render(Context({"p": product}))
        """,
    "shop_jobs.py": """\
        from decimal import Decimal
        from django import forms
        from django.contrib import admin  # noqa: F401 - the admin's module graph
        from django.template import Context, Template
        from shop.models import Product
        from supervisor_q import job
        from supervisor_q.jobs.dispatching import queue_for

        class ProductForm(forms.ModelForm):
            class Meta:
                model = Product
                fields = ["title", "price"]

        @job(name="shop.touch")
        def touch(n: int) -> None:
            product = Product(title=f"p{n}", price=Decimal("9.99"))
            ProductForm(data={"title": product.title, "price": "9.99"}).is_valid()
            Template("{{ p.title }} {{ p.price }}").render(Context({"p": product}))
            queue_for().client.incr("touched")
        """,
}

OFF = {"WARM": ", SUPERVISOR_Q_PRELOAD_WARM: '0'", "FILL": ", SUPERVISOR_Q_PRELOAD_FILL: '0'",
       "FREEZE": ", SUPERVISOR_Q_PRELOAD_FREEZE: '0'"}
VARIANTS = {"plain": ("false", "", "django:setup"),
            "preload": ("true", "", "django:setup"),
            "before": ("true", OFF["WARM"] + OFF["FILL"], "django:setup"),
            "nowarm": ("true", OFF["WARM"], "django:setup"),
            "nofill": ("true", OFF["FILL"], "django:setup"),
            "nofreeze": ("true", OFF["FREEZE"], "django:setup"),
            "warmed": ("true", "", "shop_warm:setup")}


def program(name: str, app: Path, children: int) -> str:
    preload, env, setup = VARIANTS[name]
    return (f"queues: [{name}]\nimport: [shop_jobs]\nsetup: {setup}\n"
            f"numprocs: {children}\nstartsecs: 0\nmemory: 0\ndirectory: {app}\n"
            f"preload: {preload}\n"
            f"environment: {{DJANGO_SETTINGS_MODULE: benchsite.settings{env}}}\n")


def write_app(app: Path) -> None:
    for rel, text in FILES.items():
        path = app / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def uss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_full_info().uss / 2**20


def spawn_time(master: Master, name: str, children: int, rounds: int) -> float:
    """ms per child: scale N -> N+4, until all are running (ready), best of rounds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        master.call("scale", program=name, numprocs=children + 4)
        master.wait_running(name, children + 4, timeout=60)
        best = min(best, (time.perf_counter() - start) * 1000 / 4)
        master.call("scale", program=name, numprocs=children)
        master.wait_running(name, children, timeout=60)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if importlib.util.find_spec("django") is None:  # else every program goes FATAL
        raise SystemExit("bench/preload_memory.py measures a Django app: "
                         ".venv/bin/pip install Django first")
    n = args.children
    with tempfile.TemporaryDirectory(prefix="sqp-", dir="/tmp") as tmp_name:
        tmp = Path(tmp_name)
        app = tmp / "app"
        write_app(app)
        sys.path.insert(0, str(app))
        server = RedisServer(data_dir=tmp / "redis", persistent=False)
        server.start()
        os.environ["SUPERVISOR_Q_REDIS_URL"] = server.url
        client = redis.Redis.from_url(server.url)
        (tmp / "m").mkdir()
        master = Master(tmp / "m", server.url, {name: program(name, app, n) for name in VARIANTS})
        try:
            master.start()
            for name in VARIANTS:
                master.wait_running(name, n, timeout=120)
            booted = {name: statistics.median(uss_mib(pid) for pid in master.pids(name))
                      for name in VARIANTS}
            for i in range(args.jobs * n):
                for name in VARIANTS:
                    dispatch("shop.touch", i, queue=name)
            total = args.jobs * n * len(VARIANTS)
            wait_until(lambda: int(client.get("touched") or 0) >= total, timeout=300,
                       message="the jobs ran")
            uss = {name: statistics.median(uss_mib(pid) for pid in master.pids(name))
                   for name in VARIANTS}
            spawn = {name: spawn_time(master, name, n, args.rounds) for name in VARIANTS}
        finally:
            master.stop()
            server.stop()
    report(args, booted, uss, spawn)


def report(args: argparse.Namespace, booted: dict[str, float], uss: dict[str, float],
           spawn: dict[str, float]) -> None:
    load = os.getloadavg()
    print(f"{args.children} children per program, {args.jobs} jobs each, Django "
          f"{__import__('django').get_version()}, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print(f"| program | USS per child after {args.jobs} jobs | vs plain | booted | vs plain "
          "| spawn per child |")
    print("|---|---|---|---|---|---|")
    for name in VARIANTS:
        print(f"| {name} | {uss[name]:.1f} MiB | {100 * uss[name] / uss['plain']:.0f} % "
              f"| {booted[name]:.1f} MiB | {100 * booted[name] / booted['plain']:.0f} % "
              f"| {spawn[name]:.0f} ms |")
    ratio = uss["preload"] / uss["plain"]
    print(f"\ntarget (preload USS after jobs <= 25 % of plain): "
          f"{'met' if ratio <= 0.25 else 'MISSED'} ({100 * ratio:.0f} %)")

if __name__ == "__main__":
    main()
