//! The files a runtime image is built from: a Dockerfile (a minijinja template, so a
//! team can read and change it in one place) and a pinned `requirements.txt`.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, context};

use super::PlanError;
use super::document::RuntimeImage;

const DOCKERFILE: &str = include_str!("templates/Dockerfile.j2");

pub(super) fn dockerfile(image: &RuntimeImage) -> Result<String, PlanError> {
    let mut env = Environment::new();
    let err = |e: minijinja::Error| PlanError::Render {
        what: format!("the Dockerfile of {}", image.name),
        message: e.to_string(),
    };
    let syntax = SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .map_err(err)?;
    env.set_syntax(syntax);
    env.add_template("Dockerfile", DOCKERFILE).map_err(err)?;
    env.get_template("Dockerfile")
        .and_then(|t| t.render(context! { image => Serde(image) }))
        .map_err(err)
}

pub(super) fn requirements(image: &RuntimeImage) -> String {
    let mut out = format!(
        "# {} (Python {}), planned by unsprawl: exact pins, the whole closure.\n",
        image.name, image.python
    );
    for r in &image.requirements {
        out.push_str(&format!("{}=={}\n", r.name, r.version));
    }
    out
}
