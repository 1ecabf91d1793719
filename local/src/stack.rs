//! The whole local stack: moto, one registry per account, the CodePipeline stand-in, the
//! resources `template.yaml` declares (provisioned in moto from the template itself), the local
//! functions, and the delivery of S3 drops to intake.
//!
//! Tests start one [`Stack`] each, on free ports, so test binaries run in parallel; the CLI's
//! `serve` runs one in the foreground and `up` starts that in the background.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accounts;
use crate::alarms::{self, NamedFunctions};
use crate::codepipeline::{self, CodePipelineStandIn, StandInConfig};
use crate::delivery;
use crate::function_urls::{FunctionUrlServer, url_functions};
use crate::functions::{AsyncSettings, LocalFunctions};
use crate::lambda_api;
use crate::moto::Moto;
use crate::provision::{self, Provisioned};
use crate::recorded_process::{
    self, Pid, ProcessError, ProcessIdentity, RecordError, Stale, Stopped,
};
use crate::recorder::proxy::{Endpoint, RecordingProxy};
use crate::recorder::{self, CallLog, Recording, ResolvedNames};
use crate::registries::{self, LocalRegistry};
use crate::sdk::Endpoints;

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub state_dir: PathBuf,
    pub template: PathBuf,
    /// Start the per-account registries (image checks and promotion need them).
    pub registries: bool,
    /// Deliver S3 drops to intake automatically (tests that deliver events themselves turn it off).
    pub deliver_s3_events: bool,
    /// How long a Lambda action may stay in progress without an answer (AWS: 20 minutes).
    pub job_timeout: Duration,
    /// Delays before Lambda's two retries of a failed asynchronous invocation (AWS: ~1 and ~2 minutes).
    pub retry_delays: Vec<Duration>,
    /// Values for the template's parameters (others take their defaults).
    pub parameters: BTreeMap<String, String>,
    /// How often alarms are polled for state changes (moto emits no alarm events).
    pub alarm_poll: Duration,
    /// Whether the environment accounts' alarms reach the functions too (as environment.yaml's
    /// forwarding rule does in AWS), besides the tooling account's. Tests that invoke the
    /// traffic and rollback functions themselves turn it off, to decide who sees an alarm.
    pub environment_alarms: bool,
    /// How long after a continuation the CodePipeline stand-in invokes an action again.
    pub continuation_delay: Duration,
    /// Deploy this environment template (`environment.yaml`) as `shipgate-env` in every
    /// environment account; `None` leaves the environment accounts empty.
    pub environment_template: Option<PathBuf>,
    /// Record every AWS call the functions make ([`crate::recorder`]; read with
    /// [`Stack::recording`]): moto logs its requests, and the CodePipeline stand-in, the Lambda
    /// endpoint and the registries are reached through recording fronts.
    pub record_calls: bool,
    /// Application stacks deployed beside the core (`application.yaml`, next to the template),
    /// each with its parameters: their pipelines run in the stand-in, their declarations are
    /// in Parameter Store.
    pub applications: Vec<BTreeMap<String, String>>,
}

impl StackOptions {
    /// For tests: a fresh state dir under the system temp dir, the project's template.
    pub fn for_test(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "shipgate-test-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        Self {
            state_dir: dir,
            template: crate::process::project_root().join("template.yaml"),
            registries: true,
            deliver_s3_events: true,
            job_timeout: Duration::from_secs(30),
            retry_delays: vec![Duration::from_millis(500), Duration::from_secs(1)],
            parameters: default_parameters(),
            alarm_poll: Duration::from_millis(100),
            environment_alarms: true,
            continuation_delay: Duration::from_millis(200),
            // Most tests stop before a deployment; those that deploy ask for it.
            environment_template: None,
            record_calls: false,
            applications: Vec::new(),
        }
    }

    /// For `shipgate-local serve`.
    pub fn for_cli(state_dir: &Path, template: &Path) -> Self {
        Self {
            state_dir: state_dir.to_path_buf(),
            template: template.to_path_buf(),
            registries: true,
            deliver_s3_events: true,
            job_timeout: Duration::from_secs(20 * 60),
            retry_delays: vec![Duration::from_secs(2), Duration::from_secs(4)],
            parameters: default_parameters(),
            alarm_poll: Duration::from_millis(250),
            environment_alarms: true,
            continuation_delay: Duration::from_millis(500),
            environment_template: Some(
                template
                    .parent()
                    .unwrap_or_else(|| Path::new("."))
                    .join("environment.yaml"),
            ),
            record_calls: false,
            applications: Vec::new(),
        }
    }
}

/// The template parameters the local stack sets.
pub fn default_parameters() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("MailFrom".to_owned(), "shipgate@shipgate.local".to_owned()),
        // The application the sample release (examples/) names.
        ("ApplicationName".to_owned(), "orders".to_owned()),
        (
            "RejectionFallbackEmail".to_owned(),
            "release-desk@shipgate.local".to_owned(),
        ),
        (
            "IntDeployRoleArn".to_owned(),
            accounts::deploy_role_arn(accounts::INT),
        ),
        // environment.yaml's role for CloudFormation (moto records it and checks nothing).
        (
            "IntStackRoleArn".to_owned(),
            format!(
                "arn:aws:iam::{}:role/shipgate-cloudformation",
                accounts::INT
            ),
        ),
        (
            "IntTeamEmail".to_owned(),
            "int-team@shipgate.local".to_owned(),
        ),
        (
            "IntApprovers".to_owned(),
            "int-lead@shipgate.local,int-ops@shipgate.local".to_owned(),
        ),
        (
            "StgDeployRoleArn".to_owned(),
            accounts::deploy_role_arn(accounts::STG),
        ),
        // environment.yaml's role for CloudFormation (moto records it and checks nothing).
        (
            "StgStackRoleArn".to_owned(),
            format!(
                "arn:aws:iam::{}:role/shipgate-cloudformation",
                accounts::STG
            ),
        ),
        (
            "StgTeamEmail".to_owned(),
            "stg-team@shipgate.local".to_owned(),
        ),
        (
            "StgApprovers".to_owned(),
            "stg-lead@shipgate.local".to_owned(),
        ),
        (
            "ProdDeployRoleArn".to_owned(),
            accounts::deploy_role_arn(accounts::PROD),
        ),
        // environment.yaml's role for CloudFormation (moto records it and checks nothing).
        (
            "ProdStackRoleArn".to_owned(),
            format!(
                "arn:aws:iam::{}:role/shipgate-cloudformation",
                accounts::PROD
            ),
        ),
        (
            "ProdTeamEmail".to_owned(),
            "prod-team@shipgate.local".to_owned(),
        ),
        (
            "ProdApprovers".to_owned(),
            "cab@shipgate.local,prod-oncall@shipgate.local".to_owned(),
        ),
        // The plans of a real pipeline, compressed (`scale=`): minutes become seconds.
        (
            "IntTrafficPlan".to_owned(),
            "Canary10Percent5Minutes;bake=3m;scale=60".to_owned(),
        ),
        (
            "StgTrafficPlan".to_owned(),
            "Canary10Percent5Minutes;bake=3m;scale=20".to_owned(),
        ),
        (
            "ProdTrafficPlan".to_owned(),
            "Linear10PercentEvery1Minute;bake=3m;scale=60".to_owned(),
        ),
    ])
}

/// A running local stack.
pub struct Stack {
    pub moto: Moto,
    pub registries: Vec<LocalRegistry>,
    pub endpoints: Endpoints,
    pub sdk: SdkConfig,
    pub provisioned: Provisioned,
    pub functions: Arc<LocalFunctions>,
    pub standin: CodePipelineStandIn,
    /// Function logical id → its function URL, for the template's functions that have one.
    pub function_urls: BTreeMap<String, FunctionUrlServer>,
    /// Each environment's `shipgate-env` outputs (empty without an environment template).
    pub environments: crate::environments::EnvironmentOutputs,
    /// The sample application behind each environment's test listener, by environment (empty
    /// without an environment template).
    pub test_endpoints: BTreeMap<String, crate::test_endpoints::TestEndpoint>,
    state_dir: PathBuf,
    /// What the functions' calls are recorded in, when the stack records them.
    calls: Option<Calls>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Where a recording stack's calls go: moto's log file, and the fronts' log.
struct Calls {
    moto_log: PathBuf,
    log: Arc<CallLog>,
    proxies: Vec<RecordingProxy>,
}

impl Calls {
    fn new(state_dir: &Path) -> Self {
        Self {
            moto_log: state_dir.join("moto-calls.jsonl"),
            log: Arc::new(CallLog::default()),
            proxies: Vec::new(),
        }
    }

    /// A recording front for `endpoint` at `upstream`; its URL.
    async fn front(&mut self, endpoint: Endpoint, upstream: String) -> Result<String> {
        let proxy = RecordingProxy::start(endpoint, upstream, self.log.clone()).await?;
        let url = proxy.url().to_owned();
        self.proxies.push(proxy);
        Ok(url)
    }
}

impl Stack {
    pub async fn start(options: StackOptions) -> Result<Self> {
        std::fs::create_dir_all(&options.state_dir)?;
        let template_text = std::fs::read_to_string(&options.template)
            .with_context(|| format!("reading {}", options.template.display()))?;

        let mut calls = options.record_calls.then(|| Calls::new(&options.state_dir));
        let moto = Moto::start_with(
            &options.state_dir,
            calls.as_ref().map(|c| c.moto_log.as_path()),
        )
        .await?;
        let registries = if options.registries {
            let all: Vec<&str> = std::iter::once(accounts::TOOLING)
                .chain(accounts::ENVIRONMENTS.iter().map(|(_, a)| *a))
                .collect();
            registries::start_registries(&options.state_dir, &all).await?
        } else {
            Vec::new()
        };

        // What the functions are told each account's registry is (through its recording front
        // when recording).
        let mut registry_endpoints = registries::endpoint_overrides(&registries, accounts::REGION);
        if let Some(calls) = &mut calls {
            let mut fronted = Vec::new();
            for registry in &registries {
                let endpoint = Endpoint::Registry {
                    account: registry.account.clone(),
                };
                let url = calls.front(endpoint, registry.url()).await?;
                fronted.push(format!("{}={url}", registry.ecr_host(accounts::REGION)));
            }
            registry_endpoints = fronted.join(",");
        }

        let standin_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let mut standin_url = format!("http://{}", standin_listener.local_addr()?);
        // Lambda's `Invoke` of the template's functions (moto runs no code); the rest of the
        // Lambda API goes on to moto.
        let lambda_listener = lambda_api::bind().await?;
        let mut lambda_url = format!("http://{}", lambda_listener.local_addr()?);
        if let Some(calls) = &mut calls {
            standin_url = calls.front(Endpoint::CodePipeline, standin_url).await?;
            lambda_url = calls.front(Endpoint::Lambda, lambda_url).await?;
        }
        let endpoints = Endpoints {
            default: moto.endpoint(),
            per_service: BTreeMap::from([
                (
                    "AWS_ENDPOINT_URL_CODEPIPELINE".to_owned(),
                    standin_url.clone(),
                ),
                ("AWS_ENDPOINT_URL_LAMBDA".to_owned(), lambda_url),
            ]),
            region: accounts::REGION.to_owned(),
        };
        let sdk = endpoints.sdk_config();

        // Function URLs are bound first: the template hands them to other functions
        // (`!GetAtt <Function>Url.FunctionUrl`), as SAM's generated `<Function>Url` resource does.
        let mut url_listeners = Vec::new();
        let mut attributes = BTreeMap::new();
        for id in
            url_functions(&template_text).context("reading function URLs from the template")?
        {
            let listener = FunctionUrlServer::bind(&id).await?;
            attributes.insert(
                format!("{id}Url.FunctionUrl"),
                format!("http://{}/", listener.local_addr()?),
            );
            url_listeners.push((id, listener));
        }

        let provisioned = provision::provision(
            &sdk,
            &template_text,
            &options.parameters,
            &registry_endpoints,
            &attributes,
        )
        .await
        .context("provisioning the template's resources in moto")?;

        // The sample application behind each environment's test listener, which the release's
        // checks call: its URL goes into each environment's `TestEndpoint` export.
        let (environments, test_endpoints, probes) = match &options.environment_template {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let test_endpoints = crate::test_endpoints::start_all().await?;
                let urls = test_endpoints
                    .iter()
                    .map(|(env, endpoint)| (env.clone(), endpoint.url()))
                    .collect();
                let outputs = crate::environments::provision_environments(&sdk, &text, &urls)
                    .await
                    .context("deploying the environment template in the environment accounts")?;
                let probes = crate::environments::test_probes(&sdk, &moto.endpoint())
                    .await
                    .context("configuring the environments' test probes")?;
                (outputs, test_endpoints, probes)
            }
            None => (BTreeMap::new(), BTreeMap::new(), BTreeMap::new()),
        };

        let functions = Arc::new(
            LocalFunctions::new(&sdk, &provisioned.env_by_function)
                .await?
                .with_async_settings(AsyncSettings::new(
                    &sdk,
                    options.retry_delays.clone(),
                    &provisioned.dead_letter_queues,
                )),
        );
        let mut function_urls = BTreeMap::new();
        for (id, listener) in url_listeners {
            let server = FunctionUrlServer::serve_on(listener, &id, functions.clone())?;
            function_urls.insert(id, server);
        }

        let mut definitions =
            codepipeline::pipelines_from_template(&template_text, &provisioned.resolver)
                .context("reading the pipeline from the template")?;
        if !options.applications.is_empty() {
            let path = options
                .template
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("application.yaml");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let exports = crate::applications::core_exports(&template_text, &provisioned.resolver)?;
            for parameters in &options.applications {
                let (_, pipelines) =
                    crate::applications::onboard(&sdk, &text, &exports, parameters).await?;
                definitions.extend(pipelines);
            }
        }
        let subscribers = codepipeline::sns_subscribers(&template_text)
            .context("reading SNS subscriptions from the template")?;
        let standin = CodePipelineStandIn::new(
            definitions,
            subscribers,
            shipgate::aws::s3_client(&sdk, true),
            functions.clone(),
            StandInConfig {
                job_timeout: options.job_timeout,
                approval_timeout: Duration::from_secs(7 * 24 * 3600),
                region: accounts::REGION.to_owned(),
                account_id: accounts::TOOLING.to_owned(),
                continuation_delay: options.continuation_delay,
                conformance_url: Some(format!("{}/moto-api/shipgate/conformance", moto.endpoint())),
            },
        );

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = vec![lambda_api::serve(
            lambda_listener,
            functions.clone(),
            probes,
            provisioned.function_logical_ids(),
            moto.endpoint(),
        )];
        let server = standin.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server.serve(standin_listener).await {
                tracing::error!(error = %e, "CodePipeline stand-in stopped");
            }
        }));
        if options.deliver_s3_events
            && let Some(queue_url) = provisioned.s3_event_queue.clone()
        {
            tasks.push(tokio::spawn(delivery::pump_s3_events(
                aws_sdk_sqs::Client::new(&sdk),
                shipgate::aws::s3_client(&sdk, true),
                queue_url,
                functions.clone(),
                options.retry_delays.clone(),
                stop_rx.clone(),
            )));
        }
        // Always watched, subscribers or not: an alarm's own Lambda action can name a function
        // that no template rule subscribes.
        let alarm_routes = Arc::new(alarms::AlarmRoutes {
            subscribers: alarms::alarm_subscribers(&template_text)
                .context("reading alarm subscriptions from the template")?,
            permissions: provisioned.lambda_permissions.clone(),
        });
        // Alarm actions name functions by physical name (their ARN); the host knows logical ids.
        let alarm_host = NamedFunctions::from_provisioned(functions.clone(), &provisioned);
        // In AWS each environment account's default bus forwards its alarm state changes to the
        // tooling account's bus (environment.yaml's rule), where the template's rule matches
        // them: one watcher per account, each reading that account's alarms.
        let alarm_host = Arc::new(alarm_host);
        let watched: &[&str] = if options.environment_alarms {
            &[
                accounts::TOOLING,
                accounts::INT,
                accounts::STG,
                accounts::PROD,
            ]
        } else {
            &[accounts::TOOLING]
        };
        for &account in watched {
            let account_sdk = if account == accounts::TOOLING {
                sdk.clone()
            } else {
                shipgate::aws::assume_role(&sdk, &accounts::deploy_role_arn(account), "alarms")
                    .await
            };
            tasks.push(tokio::spawn(alarms::watch_alarms(
                aws_sdk_cloudwatch::Client::new(&account_sdk),
                alarm_host.clone(),
                alarm_routes.clone(),
                account.to_owned(),
                accounts::REGION.to_owned(),
                options.alarm_poll,
                options.retry_delays.clone(),
                stop_rx.clone(),
            )));
        }

        Ok(Self {
            moto,
            registries,
            endpoints,
            sdk,
            provisioned,
            functions,
            standin,
            function_urls,
            environments,
            test_endpoints,
            state_dir: options.state_dir,
            calls,
            stop,
            tasks,
        })
    }

    /// Every call the functions made so far, with who made it, and what the templates'
    /// references resolved to here (what their policies are read with). An error when the
    /// stack does not record calls ([`StackOptions::record_calls`]).
    pub async fn recording(&self) -> Result<Recording> {
        let calls = self
            .calls
            .as_ref()
            .context("this stack does not record calls (StackOptions::record_calls)")?;
        let mut logged = recorder::read_moto_log(&calls.moto_log)?;
        logged.extend(calls.log.snapshot());
        let mut names = ResolvedNames {
            tooling_refs: self.provisioned.resolver.refs.clone(),
            tooling_attributes: self.provisioned.resolver.attributes.clone(),
            environments: BTreeMap::new(),
        };
        if !self.environments.is_empty() {
            for (_, account) in accounts::ENVIRONMENTS {
                names.environments.insert(
                    account.to_owned(),
                    crate::environments::references(&self.sdk, account).await?,
                );
            }
        }
        Ok(Recording::assemble(logged, names))
    }

    /// The variables a function or tool needs to use this stack (`KEY='value'` lines).
    pub fn env_file_contents(&self) -> String {
        let mut vars: BTreeMap<String, String> = self.endpoints.env_vars().into_iter().collect();
        vars.extend(self.provisioned.function_env.clone());
        vars.insert("SHIPGATE_LOCAL_MOTO".into(), self.moto.endpoint());
        for r in &self.registries {
            vars.insert(format!("SHIPGATE_LOCAL_REGISTRY_{}", r.account), r.url());
        }
        for (id, server) in &self.function_urls {
            vars.insert(
                format!("SHIPGATE_LOCAL_URL_{}", id.to_uppercase()),
                server.url(),
            );
        }
        for (environment, endpoint) in &self.test_endpoints {
            vars.insert(crate::test_endpoints::env_var(environment), endpoint.url());
        }
        // What the operator CLI (`shipgate failed ...`) reads, as `--stack` discovers in AWS.
        let refs = &self.provisioned.refs;
        for (var, logical_id) in [
            ("SHIPGATE_FAILED_QUEUE_URL", "FailedInvocationQueue"),
            ("SHIPGATE_INTAKE_FUNCTION", "IntakeFunction"),
            ("SHIPGATE_MAILER_FUNCTION", "MailerFunction"),
            ("SHIPGATE_ROLLBACK_FUNCTION", "RollbackFunction"),
        ] {
            if let Some(value) = refs.get(logical_id) {
                vars.insert(var.to_owned(), value.clone());
            }
        }
        vars.iter()
            .map(|(k, v)| format!("{k}='{}'\n", v.replace('\'', "'\\''")))
            .collect()
    }

    /// The ECR host → local registry map the functions are configured with.
    /// The registries' endpoints as `SourceRegistryEndpoints` takes them (`host=url,...`).
    pub fn registry_endpoints(&self) -> String {
        registries::endpoint_overrides(&self.registries, accounts::REGION)
    }

    pub fn registry_overrides(&self) -> BTreeMap<String, String> {
        self.registry_endpoints()
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Stops the function URLs, delivery, the stand-in, the registries and moto.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for server in self.function_urls.into_values() {
            server.stop().await;
        }
        for task in self.tasks {
            task.abort();
        }
        for endpoint in self.test_endpoints.into_values() {
            endpoint.stop();
        }
        for proxy in self.calls.into_iter().flat_map(|c| c.proxies) {
            proxy.stop();
        }
        for r in self.registries {
            r.stop().await;
        }
        self.moto.stop().await;
    }
}

/// The files of a stack started by `up`: the `serve` process's record, env file, logs.
#[derive(Debug, Clone)]
pub struct StateFiles {
    pub dir: PathBuf,
    /// Which process `serve` is ([`ProcessIdentity`]): what `down` may signal, and only while
    /// that process is still running.
    pub pid_file: PathBuf,
    pub env_file: PathBuf,
    pub serve_log: PathBuf,
}

/// Why `up` or `down` cannot tell which `serve` the state dir belongs to.
#[derive(Debug, thiserror::Error)]
pub enum ServeRecordError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a record this shipgate-local wrote ({source}); nothing was signalled. \
         If a stack started from this state dir still runs, stop it yourself, then remove {path}"
    )]
    Malformed {
        path: PathBuf,
        #[source]
        source: RecordError,
    },
    #[error("{path} names pid {pid}, which cannot be checked: {source}; nothing was signalled")]
    Process {
        path: PathBuf,
        pid: Pid,
        #[source]
        source: ProcessError,
    },
}

/// What the state dir says about its `serve` process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServeState {
    /// No record: no stack was started from here, or it stopped and cleaned up.
    NotRecorded,
    Running(ProcessIdentity),
    /// The recorded process has gone; its record (and maybe env file) are left over.
    Stale(Stale),
}

/// How `down` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownOutcome {
    NotRunning,
    /// The record was stale: nothing was signalled.
    Stale(Stale),
    Stopped {
        pid: Pid,
        how: Stopped,
    },
}

/// What `down` did, and which of the state dir's files it removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    pub outcome: DownOutcome,
    pub removed: Vec<PathBuf>,
}

impl StateFiles {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            pid_file: dir.join("serve.pid"),
            env_file: dir.join("env"),
            serve_log: dir.join("serve.log"),
        }
    }

    /// Whether the recorded `serve` is running. A record that is not one `serve` wrote is an
    /// error, not "not running": the process it meant may be alive.
    pub fn serve_state(&self) -> Result<ServeState, ServeRecordError> {
        let Some(identity) = self.read_serve_record()? else {
            return Ok(ServeState::NotRecorded);
        };
        match identity.check() {
            Ok(Ok(())) => Ok(ServeState::Running(identity)),
            Ok(Err(stale)) => Ok(ServeState::Stale(stale)),
            Err(source) => Err(self.process_error(&identity, source)),
        }
    }

    /// Stops the recorded `serve` (SIGTERM, SIGKILL after `grace`) if it is the process that
    /// wrote the record, and removes the record and env file once it has gone. A record naming
    /// anything else is refused without a signal.
    pub fn stop_serve(&self, grace: Duration) -> Result<Down, ServeRecordError> {
        let Some(identity) = self.read_serve_record()? else {
            // An env file without a record is left from a `serve` that died while cleaning up.
            return Ok(Down {
                outcome: DownOutcome::NotRunning,
                removed: self.clear(),
            });
        };
        let outcome = match recorded_process::stop(&identity, grace) {
            Ok(Err(stale)) => DownOutcome::Stale(stale),
            Ok(Ok(how)) => DownOutcome::Stopped {
                pid: identity.pid(),
                how,
            },
            Err(source) => return Err(self.process_error(&identity, source)),
        };
        Ok(Down {
            outcome,
            removed: self.clear(),
        })
    }

    /// Records the `serve` process (this one).
    pub fn write_serve_record(&self, identity: &ProcessIdentity) -> Result<()> {
        write_whole(&self.pid_file, &identity.to_record())
    }

    /// Written last by `serve`: its presence means the stack is ready.
    pub fn write_env(&self, contents: &str) -> Result<()> {
        write_whole(&self.env_file, contents)
    }

    /// Removes the record and the env file; returns those that were there.
    pub fn clear(&self) -> Vec<PathBuf> {
        [&self.pid_file, &self.env_file]
            .into_iter()
            .filter(|path| std::fs::remove_file(path).is_ok())
            .cloned()
            .collect()
    }

    fn read_serve_record(&self) -> Result<Option<ProcessIdentity>, ServeRecordError> {
        let text = match std::fs::read_to_string(&self.pid_file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ServeRecordError::Read {
                    path: self.pid_file.clone(),
                    source,
                });
            }
        };
        ProcessIdentity::parse(&text)
            .map(Some)
            .map_err(|source| ServeRecordError::Malformed {
                path: self.pid_file.clone(),
                source,
            })
    }

    fn process_error(&self, identity: &ProcessIdentity, source: ProcessError) -> ServeRecordError {
        ServeRecordError::Process {
            path: self.pid_file.clone(),
            pid: identity.pid(),
            source,
        }
    }

    /// The env file's variables.
    pub fn read_env(&self) -> Result<Vec<(String, String)>> {
        let text = std::fs::read_to_string(&self.env_file).with_context(|| {
            format!(
                "no running stack: {} is missing (run `shipgate-local up`)",
                self.env_file.display()
            )
        })?;
        Ok(text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| {
                let v = v.trim();
                let v = v
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .unwrap_or(v);
                (k.trim().to_owned(), v.replace("'\\''", "'"))
            })
            .collect())
    }
}

/// Writes `contents` to a temporary file and renames it over `path`, so a reader sees the old
/// file or the new one, never half of one.
fn write_whole(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_dir() -> StateFiles {
        let dir =
            std::env::temp_dir().join(format!("shipgate-state-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = StateFiles::new(&dir);
        std::fs::write(&files.env_file, "AWS_REGION='eu-west-1'\n").unwrap();
        files
    }

    /// `identity`'s record with another start time: the same pid, another process.
    fn with_start_time(identity: &ProcessIdentity, start: &str) -> String {
        identity
            .to_record()
            .lines()
            .map(|line| match line.strip_prefix("start_time ") {
                Some(_) => format!("start_time {start}\n"),
                None => format!("{line}\n"),
            })
            .collect()
    }

    #[test]
    fn a_record_that_serve_did_not_write_is_refused_and_left_in_place() {
        let files = state_dir();
        for text in ["0\n", "12345\n", "pid -1\nstart_time 1\nboot_id x\n"] {
            std::fs::write(&files.pid_file, text).unwrap();
            let error = files.stop_serve(Duration::from_millis(10)).unwrap_err();
            assert!(
                matches!(error, ServeRecordError::Malformed { .. }),
                "{error}"
            );
            assert!(
                error.to_string().contains("nothing was signalled"),
                "{error}"
            );
            assert!(matches!(
                files.serve_state(),
                Err(ServeRecordError::Malformed { .. })
            ));
            assert_eq!(std::fs::read_to_string(&files.pid_file).unwrap(), text);
            assert!(files.env_file.exists());
        }
        let _ = std::fs::remove_dir_all(&files.dir);
    }

    #[test]
    fn a_record_naming_this_test_with_another_start_time_signals_nothing_and_is_removed() {
        let files = state_dir();
        let me = ProcessIdentity::of_self().unwrap();
        std::fs::write(&files.pid_file, with_start_time(&me, "1")).unwrap();
        assert!(matches!(
            files.serve_state().unwrap(),
            ServeState::Stale(Stale::Reused { .. })
        ));
        let down = files.stop_serve(Duration::from_millis(10)).unwrap();
        assert!(
            matches!(down.outcome, DownOutcome::Stale(Stale::Reused { pid, .. }) if pid == me.pid()),
            "{down:?}"
        );
        assert_eq!(
            down.removed,
            vec![files.pid_file.clone(), files.env_file.clone()]
        );
        let _ = std::fs::remove_dir_all(&files.dir);
    }

    #[test]
    fn the_recorded_serve_is_stopped_and_its_files_removed() {
        use std::os::unix::process::ExitStatusExt;
        let files = state_dir();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = Pid::new(u64::from(child.id())).unwrap();
        let identity = ProcessIdentity::of(pid).unwrap().unwrap();
        files.write_serve_record(&identity).unwrap();
        assert_eq!(files.serve_state().unwrap(), ServeState::Running(identity));

        let down = files.stop_serve(Duration::from_secs(5)).unwrap();
        assert_eq!(
            down.outcome,
            DownOutcome::Stopped {
                pid,
                how: Stopped::Terminated
            }
        );
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
        assert_eq!(
            down.removed,
            vec![files.pid_file.clone(), files.env_file.clone()]
        );
        assert_eq!(files.serve_state().unwrap(), ServeState::NotRecorded);
        let _ = std::fs::remove_dir_all(&files.dir);
    }
}
