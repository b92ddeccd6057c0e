"""The one build step pyproject.toml cannot declare: the top-level ``assets/`` folder (default
model, face-detector models, sample media, model card, user guide) goes into the wheel as
``gsmc_core/assets``, so the app and the CLI work offline straight after ``pip install``.
Everything else about the package is in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install reads assets/ in place (resources.py)
            self.copy_tree(str(Path(__file__).parent / "assets"),
                           str(Path(self.build_lib) / "gsmc_core" / "assets"))


setup(cmdclass={"build_py": BuildWithAssets})
