use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::{BackendTest, DirectHarness, Harness, Outcome, Test, TestResult};

/// The longest one test may take before it fails as hung.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How one test ended.
#[derive(Clone, Debug)]
pub struct TestReport {
    /// The test's name.
    pub name: &'static str,
    /// `Ok` with how it passed, or the failure message (a returned failure, a panic or a
    /// timeout).
    pub result: Result<Outcome, String>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl TestReport {
    /// The failure message, when the test failed.
    pub fn failure(&self) -> Option<&str> {
        self.result.as_ref().err().map(String::as_str)
    }
}

/// The results of [`run_all`].
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The harness's name.
    pub harness: String,
    /// One report per test, in the order they ran.
    pub tests: Vec<TestReport>,
}

impl Report {
    /// How many tests ran and passed (skipped ones excluded).
    pub fn passed(&self) -> usize {
        self.count(|r| matches!(r, Ok(Outcome::Passed)))
    }

    /// How many tests did not apply.
    pub fn skipped(&self) -> usize {
        self.count(|r| matches!(r, Ok(Outcome::Skipped(_))))
    }

    /// How many tests failed.
    pub fn failed(&self) -> usize {
        self.count(Result::is_err)
    }

    /// Whether no test failed.
    pub fn success(&self) -> bool {
        self.failed() == 0
    }

    fn count(&self, pred: impl Fn(&Result<Outcome, String>) -> bool) -> usize {
        self.tests.iter().filter(|t| pred(&t.result)).count()
    }
}

impl std::fmt::Display for Report {
    /// One line per test, then a summary line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for t in &self.tests {
            let ms = t.elapsed.as_millis();
            match &t.result {
                Ok(Outcome::Passed) => writeln!(f, "ok      {} ({ms} ms)", t.name)?,
                Ok(Outcome::Skipped(why)) => writeln!(f, "skipped {} ({why})", t.name)?,
                Err(message) => writeln!(f, "FAILED  {} ({ms} ms): {message}", t.name)?,
            }
        }
        write!(
            f,
            "{}: {} passed, {} failed, {} skipped",
            self.harness,
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }
}

/// Runs one test against `harness`, turning a panic or a hang (past two minutes) into a
/// failure; a test that passed then fails if [`Harness::verify`] does.
pub async fn run_test(harness: &dyn Harness, test: Test) -> TestReport {
    let mut report = guarded(test.name, test.run(harness)).await;
    if report.result == Ok(Outcome::Passed)
        && let Err(failure) = harness.verify()
    {
        report.result = Err(format!("the harness's own check: {failure}"));
    }
    report
}

/// Runs one test of the engine contract against `harness`, turning a panic or a hang (past two
/// minutes) into a failure.
pub async fn run_backend_test(harness: &dyn DirectHarness, test: BackendTest) -> TestReport {
    guarded(test.name, test.run(harness)).await
}

async fn guarded(name: &'static str, run: BoxFuture<'_, TestResult>) -> TestReport {
    let start = Instant::now();
    let run = AssertUnwindSafe(run).catch_unwind();
    let result = match tokio::time::timeout(TEST_TIMEOUT, run).await {
        Ok(Ok(Ok(outcome))) => Ok(outcome),
        Ok(Ok(Err(failure))) => Err(failure.to_string()),
        Ok(Err(panic)) => Err(format!("panicked: {}", panic_message(&*panic))),
        Err(_) => Err(format!("did not finish within {TEST_TIMEOUT:?}")),
    };
    TestReport {
        name,
        result,
        elapsed: start.elapsed(),
    }
}

/// Runs every test of the suite against `harness`, one after the other.
///
/// Runs inside a tokio runtime (tests spawn tasks and blocking calls); a multi-threaded one
/// lets concurrent tests interleave for real.
pub async fn run_all(harness: &dyn Harness) -> Report {
    let mut report = Report::new(harness.name());
    for test in crate::tests() {
        report.push(run_test(harness, *test).await);
    }
    report
}

/// Runs every test of the engine contract (see [`crate::backend_suite!`]) against `harness`,
/// one after the other, inside a tokio runtime like [`run_all`].
pub async fn run_backend_suite(harness: &dyn DirectHarness) -> Report {
    let mut report = Report::new(harness.name());
    for test in crate::backend_tests() {
        report.push(run_backend_test(harness, *test).await);
    }
    report
}

impl Report {
    fn new(harness: String) -> Self {
        Report {
            harness,
            tests: Vec::new(),
        }
    }

    fn push(&mut self, result: TestReport) {
        if let Some(message) = result.failure() {
            tracing::warn!(test = result.name, harness = %self.harness, message, "failed");
        }
        self.tests.push(result);
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}
