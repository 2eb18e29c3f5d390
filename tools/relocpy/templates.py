"""Render the jinja2 build scripts and Dockerfiles kept under build/."""

from __future__ import annotations

from relocpy.errors import RecipeError
from relocpy.extras import Lazy
from relocpy.paths import templates_dir

jinja2 = Lazy("build", "jinja2")


def render(template: str, **context) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    try:
        return env.get_template(template).render(**context)
    except jinja2.TemplateNotFound:
        raise RecipeError(f"build/{template}: template missing") from None
    except jinja2.UndefinedError as exc:
        raise RecipeError(f"build/{template}: {exc.message}") from None
