//! The Jobs API's topic names: a builder ([`Topic::name`]) and a parser
//! ([`Topic::parse`]) saying which thing, which job, which call and answer.

use super::{JobsError, NEXT};

/// Which execution a Describe names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobRef {
    /// `$next`: the next pending execution.
    Next,
    /// A job by id.
    Id(String),
}

impl JobRef {
    fn as_str(&self) -> &str {
        match self {
            JobRef::Next => NEXT,
            JobRef::Id(id) => id,
        }
    }
}

/// A call of the device API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Call {
    /// GetPendingJobExecutions.
    GetPending,
    /// StartNextPendingJobExecution.
    StartNext,
    /// DescribeJobExecution.
    Describe(JobRef),
    /// UpdateJobExecution of a job (never `$next`).
    Update(String),
}

/// Which answer topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Answer {
    /// `.../accepted`.
    Accepted,
    /// `.../rejected`.
    Rejected,
}

/// A Jobs topic of one thing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `notify-next`: the next pending execution changed.
    NotifyNext,
    /// `notify`: the list of pending executions changed.
    Notify,
    /// A request.
    Request(Call),
    /// An answer to a request.
    Answer(Call, Answer),
}

const THINGS: &str = "$aws/things/";

impl Topic {
    /// The topic name for `thing`.
    pub fn name(&self, thing: &str) -> String {
        let base = format!("{THINGS}{thing}/jobs");
        let call = |c: &Call| match c {
            Call::GetPending => format!("{base}/get"),
            Call::StartNext => format!("{base}/start-next"),
            Call::Describe(j) => format!("{base}/{}/get", j.as_str()),
            Call::Update(id) => format!("{base}/{id}/update"),
        };
        match self {
            Topic::NotifyNext => format!("{base}/notify-next"),
            Topic::Notify => format!("{base}/notify"),
            Topic::Request(c) => call(c),
            Topic::Answer(c, Answer::Accepted) => format!("{}/accepted", call(c)),
            Topic::Answer(c, Answer::Rejected) => format!("{}/rejected", call(c)),
        }
    }

    /// Splits a topic into (thing, which). Thing names and job ids are
    /// checked against AWS's patterns (`[a-zA-Z0-9:_-]{1,128}`,
    /// `[a-zA-Z0-9_-]{1,64}`).
    pub fn parse(topic: &str) -> Result<(String, Topic), JobsError> {
        let bad = || JobsError::Topic(topic.to_owned());
        let rest = topic.strip_prefix(THINGS).ok_or_else(bad)?;
        let (thing, rest) = rest.split_once("/jobs/").ok_or_else(bad)?;
        if !valid_thing_name(thing) {
            return Err(bad());
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let answer = |s: &str| match s {
            "accepted" => Some(Answer::Accepted),
            "rejected" => Some(Answer::Rejected),
            _ => None,
        };
        let (call, tail) = match parts.as_slice() {
            ["notify-next"] => return Ok((thing.to_owned(), Topic::NotifyNext)),
            ["notify"] => return Ok((thing.to_owned(), Topic::Notify)),
            ["get", tail @ ..] => (Call::GetPending, tail),
            ["start-next", tail @ ..] => (Call::StartNext, tail),
            [NEXT, "get", tail @ ..] => (Call::Describe(JobRef::Next), tail),
            [id, "get", tail @ ..] if valid_job_id(id) => {
                (Call::Describe(JobRef::Id((*id).to_owned())), tail)
            }
            [id, "update", tail @ ..] if valid_job_id(id) => (Call::Update((*id).to_owned()), tail),
            _ => return Err(bad()),
        };
        let which = match tail {
            [] => Topic::Request(call),
            [a] => Topic::Answer(call, answer(a).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        Ok((thing.to_owned(), which))
    }
}

/// AWS's thing-name pattern: `[a-zA-Z0-9:_-]`, 1 to 128 characters.
pub fn valid_thing_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-:".contains(&b))
}

/// AWS's job-id pattern: `[a-zA-Z0-9_-]`, 1 to 64 characters.
pub fn valid_job_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b))
}

/// The topics a device subscribes to before its first request: the
/// notifications and every call's answers (`+` for the job id).
pub fn device_subscriptions(thing: &str) -> Vec<String> {
    let base = format!("{THINGS}{thing}/jobs");
    vec![
        format!("{base}/notify-next"),
        format!("{base}/get/+"),
        format!("{base}/start-next/+"),
        format!("{base}/+/get/+"),
        format!("{base}/+/update/+"),
    ]
}

/// The filters the backend subscribes to: every thing's requests (and no
/// answers, which sit one level deeper).
pub const BACKEND_FILTERS: [&str; 4] = [
    "$aws/things/+/jobs/get",
    "$aws/things/+/jobs/start-next",
    "$aws/things/+/jobs/+/get",
    "$aws/things/+/jobs/+/update",
];
