//! Change-set summary: what a CloudFormation change set will do, in the order an approver
//! should read it.
//!
//! The types mirror CloudFormation's documented `DescribeChangeSet` output (`ResourceChange`,
//! `ResourceChangeDetail`, `ResourceTargetDefinition`) and deserialise from its JSON shape, so
//! AWS's own examples are test fixtures; the change-set adapter maps SDK types into them. The
//! decision itself ([`summarise_change_set`]) is pure: no SDK types, no clock, no I/O, so every
//! case an approver may meet is a unit test.
//!
//! Order of the summary: replacements (`True`, then `Conditional`, with the properties that
//! force them), removals, undetermined actions, additions, imports, in-place modifications.
//! IAM changes, image changes and deletions are also flagged apart, because approvers asked to
//! see them first. An empty change set is a normal outcome ("no changes").
//!
//! moto reports only `Action` per resource (no `Replacement`, `Scope` or `Details`): such
//! changes are summarised as not replaced and rendered with "details unavailable".

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// The action CloudFormation takes on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ChangeAction {
    Add,
    Modify,
    Remove,
    Import,
    /// The exact action cannot be determined before execution.
    Dynamic,
}

/// Whether CloudFormation replaces the resource (create new, delete old). Set for `Modify` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Replacement {
    True,
    False,
    Conditional,
}

/// A resource attribute a change touches (`Scope` and `Target.Attribute`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub enum Attribute {
    Properties,
    Metadata,
    CreationPolicy,
    UpdatePolicy,
    DeletionPolicy,
    Tags,
    UpdateReplacePolicy,
    /// A value AWS added after this code was written: kept rather than failing the summary.
    #[serde(other)]
    Other,
}

/// Whether changing this target recreates the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum RequiresRecreation {
    Never,
    Conditionally,
    Always,
}

/// Whether CloudFormation knows the new value before execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Evaluation {
    Static,
    Dynamic,
}

/// What triggered a change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub enum ChangeSource {
    ResourceReference,
    ParameterReference,
    ResourceAttribute,
    DirectModification,
    Automatic,
    #[serde(other)]
    Other,
}

/// The field CloudFormation changes (`ResourceTargetDefinition`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChangeTarget {
    pub attribute: Option<Attribute>,
    /// The property name, when `attribute` is `Properties`.
    pub name: Option<String>,
    pub requires_recreation: Option<RequiresRecreation>,
}

/// One change CloudFormation makes to a resource (`ResourceChangeDetail`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChangeDetail {
    pub target: Option<ChangeTarget>,
    pub evaluation: Option<Evaluation>,
    pub change_source: Option<ChangeSource>,
    /// The parameter, resource or attribute that caused the change (e.g. `KeyPairName`).
    pub causing_entity: Option<String>,
}

/// A resource and the action CloudFormation will take on it (`ResourceChange`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceChange {
    pub action: ChangeAction,
    // AWS documents every field but Action as optional; missing ids render as empty.
    #[serde(rename = "LogicalResourceId", default)]
    pub logical_id: String,
    #[serde(rename = "PhysicalResourceId")]
    pub physical_id: Option<String>,
    #[serde(default)]
    pub resource_type: String,
    pub replacement: Option<Replacement>,
    #[serde(default)]
    pub scope: Vec<Attribute>,
    #[serde(default)]
    pub details: Vec<ChangeDetail>,
}

/// One entry of `Changes` (`Change`): `Type` is always `Resource` today.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Change {
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    pub resource_change: Option<ResourceChange>,
}

/// The part of `DescribeChangeSet`'s output the summary needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeChangeSetOutput {
    #[serde(default)]
    pub changes: Vec<Change>,
}

impl DescribeChangeSetOutput {
    /// The resource changes, skipping entries of another `Type` (none exist today).
    pub fn resource_changes(&self) -> Vec<ResourceChange> {
        self.changes
            .iter()
            .filter_map(|c| c.resource_change.clone())
            .collect()
    }
}

/// Where an entry sits in the summary; the declaration order is the reading order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Category {
    Replaced,
    ConditionallyReplaced,
    Removed,
    /// `Dynamic` action: shown before the known-benign categories because nobody knows yet.
    Undetermined,
    Added,
    Imported,
    Modified,
}

impl Category {
    /// The label summaries show: `REPLACE`, `MAY REPLACE`, `REMOVE`, …
    pub fn label(self) -> &'static str {
        match self {
            Category::Replaced => "REPLACE",
            Category::ConditionallyReplaced => "MAY REPLACE",
            Category::Removed => "REMOVE",
            Category::Undetermined => "UNDETERMINED",
            Category::Added => "ADD",
            Category::Imported => "IMPORT",
            Category::Modified => "MODIFY",
        }
    }
}

/// Something an approver must see before the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attention {
    /// An `AWS::IAM::*` resource: permissions change.
    Iam,
    /// A container image or function code changes: this is what the release ships.
    Image,
    /// The resource is deleted.
    Deletion,
}

/// A property whose change recreates the resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecreationCause {
    /// The property name, or the attribute when the target has no name (e.g. `Tags`).
    pub property: String,
    pub requires_recreation: RequiresRecreation,
    /// The parameter or resource behind the change, when CloudFormation names one.
    pub causing_entity: Option<String>,
}

/// One resource, as the summary shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryEntry {
    pub category: Category,
    pub logical_id: String,
    pub physical_id: Option<String>,
    pub resource_type: String,
    /// For replacements: the properties that force them.
    pub recreation_causes: Vec<RecreationCause>,
    /// Every property or attribute touched, deduplicated, in CloudFormation's order.
    pub changed: Vec<String>,
    pub attention: Vec<Attention>,
    /// False when CloudFormation (or moto) gave no `Details` for a modification.
    pub details_available: bool,
}

/// Counts per category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCounts {
    pub replaced: usize,
    pub conditionally_replaced: usize,
    pub removed: usize,
    pub undetermined: usize,
    pub added: usize,
    pub imported: usize,
    pub modified: usize,
}

/// A change set, summarised for approvers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    /// Ordered by [`Category`], then by the change set's own order.
    pub entries: Vec<SummaryEntry>,
    pub counts: ChangeCounts,
    /// Logical ids of IAM resources changed in any way.
    pub iam_changes: Vec<String>,
    /// Logical ids of resources whose image or code changes.
    pub image_changes: Vec<String>,
    /// Logical ids of resources removed.
    pub deletions: Vec<String>,
}

/// Summarises a change set's resource changes for approvers.
pub fn summarise_change_set(changes: &[ResourceChange]) -> ChangeSummary {
    let mut summary = ChangeSummary::default();
    for change in changes {
        let entry = summarise_resource(change);
        let counter = match entry.category {
            Category::Replaced => &mut summary.counts.replaced,
            Category::ConditionallyReplaced => &mut summary.counts.conditionally_replaced,
            Category::Removed => &mut summary.counts.removed,
            Category::Undetermined => &mut summary.counts.undetermined,
            Category::Added => &mut summary.counts.added,
            Category::Imported => &mut summary.counts.imported,
            Category::Modified => &mut summary.counts.modified,
        };
        *counter += 1;
        for attention in &entry.attention {
            let list = match attention {
                Attention::Iam => &mut summary.iam_changes,
                Attention::Image => &mut summary.image_changes,
                Attention::Deletion => &mut summary.deletions,
            };
            list.push(entry.logical_id.clone());
        }
        summary.entries.push(entry);
    }
    // Stable: within a category the change set's order is kept.
    summary.entries.sort_by_key(|e| e.category);
    summary
}

fn summarise_resource(change: &ResourceChange) -> SummaryEntry {
    let category = match (change.action, change.replacement) {
        // Replacement only means something for Modify; unknown (moto) counts as not replaced.
        (ChangeAction::Modify, Some(Replacement::True)) => Category::Replaced,
        (ChangeAction::Modify, Some(Replacement::Conditional)) => Category::ConditionallyReplaced,
        (ChangeAction::Modify, _) => Category::Modified,
        (ChangeAction::Remove, _) => Category::Removed,
        (ChangeAction::Add, _) => Category::Added,
        (ChangeAction::Import, _) => Category::Imported,
        (ChangeAction::Dynamic, _) => Category::Undetermined,
    };

    let mut changed: Vec<String> = Vec::new();
    let mut recreation_causes: Vec<RecreationCause> = Vec::new();
    for detail in &change.details {
        let Some(target) = &detail.target else {
            continue;
        };
        let Some(property) = target_label(target) else {
            continue;
        };
        if !changed.contains(&property) {
            changed.push(property.clone());
        }
        let recreation = match target.requires_recreation {
            Some(r @ (RequiresRecreation::Always | RequiresRecreation::Conditionally)) => r,
            _ => continue,
        };
        // A parameter change appears twice (Dynamic and Static evaluation): keep one cause,
        // preferring the one that names its causing entity.
        match recreation_causes
            .iter_mut()
            .find(|c| c.property == property && c.requires_recreation == recreation)
        {
            Some(existing) => {
                if existing.causing_entity.is_none() {
                    existing.causing_entity.clone_from(&detail.causing_entity);
                }
            }
            None => recreation_causes.push(RecreationCause {
                property,
                requires_recreation: recreation,
                causing_entity: detail.causing_entity.clone(),
            }),
        }
    }
    // The most intrusive causes first, as CloudFormation decides by them.
    recreation_causes.sort_by_key(|c| c.requires_recreation != RequiresRecreation::Always);

    let mut attention = Vec::new();
    if change.resource_type.starts_with("AWS::IAM::") {
        attention.push(Attention::Iam);
    }
    if changes_image(change) {
        attention.push(Attention::Image);
    }
    if change.action == ChangeAction::Remove {
        attention.push(Attention::Deletion);
    }

    SummaryEntry {
        category,
        logical_id: change.logical_id.clone(),
        physical_id: change.physical_id.clone(),
        resource_type: change.resource_type.clone(),
        recreation_causes,
        changed,
        attention,
        details_available: !change.details.is_empty(),
    }
}

/// The property name, or the attribute's name for non-property targets (e.g. `Tags`).
fn target_label(target: &ChangeTarget) -> Option<String> {
    if let Some(name) = &target.name {
        return Some(name.clone());
    }
    let attribute = match target.attribute.as_ref()? {
        Attribute::Properties => "Properties",
        Attribute::Metadata => "Metadata",
        Attribute::CreationPolicy => "CreationPolicy",
        Attribute::UpdatePolicy => "UpdatePolicy",
        Attribute::DeletionPolicy => "DeletionPolicy",
        Attribute::Tags => "Tags",
        Attribute::UpdateReplacePolicy => "UpdateReplacePolicy",
        Attribute::Other => "other attribute",
    };
    Some(attribute.to_owned())
}

/// Image changes are read from details only: without them (moto) we do not guess.
fn changes_image(change: &ResourceChange) -> bool {
    let image_properties: &[&str] = match change.resource_type.as_str() {
        "AWS::ECS::TaskDefinition" => &["ContainerDefinitions"],
        // A container-image function's image is `Code.ImageUri`; the detail names `Code`.
        "AWS::Lambda::Function" => &["Code", "ImageUri"],
        _ => return false,
    };
    change.details.iter().any(|d| {
        d.target
            .as_ref()
            .and_then(|t| t.name.as_deref())
            .is_some_and(|name| image_properties.contains(&name))
    })
}

impl ChangeSummary {
    /// No resource changes: a normal outcome, not an error.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One line for subjects and page titles: "2 replaced, 1 removed, 3 added, 4 modified".
    pub fn headline(&self) -> String {
        let c = &self.counts;
        let parts: Vec<String> = [
            (c.replaced, "replaced"),
            (c.conditionally_replaced, "possibly replaced"),
            (c.removed, "removed"),
            (c.undetermined, "undetermined"),
            (c.added, "added"),
            (c.imported, "imported"),
            (c.modified, "modified"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() {
            "no changes".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// Plain text for the email: the headline, what needs attention, one line per resource.
    pub fn to_text(&self) -> String {
        let mut out = self.headline();
        out.push('\n');
        for (label, ids) in [
            ("IAM changes", &self.iam_changes),
            ("Image changes", &self.image_changes),
            ("Deletions", &self.deletions),
        ] {
            if !ids.is_empty() {
                let _ = writeln!(out, "{label}: {}", ids.join(", "));
            }
        }
        for entry in &self.entries {
            let mut tags = String::new();
            for attention in &entry.attention {
                match attention {
                    Attention::Iam => tags.push_str(" [IAM]"),
                    Attention::Image => tags.push_str(" [image]"),
                    // The REMOVE label already says it.
                    Attention::Deletion => {}
                }
            }
            let _ = writeln!(
                out,
                "{} {} ({}): {}{tags}",
                entry.category.label(),
                entry.logical_id,
                entry.resource_type,
                entry.reason()
            );
        }
        out
    }
}

impl SummaryEntry {
    /// Why the resource is in this category, in a few words.
    pub fn reason(&self) -> String {
        match self.category {
            Category::Added => return "new resource".to_owned(),
            Category::Removed => return "deleted".to_owned(),
            Category::Imported => return "imported into the stack".to_owned(),
            _ => {}
        }
        if !self.details_available {
            return "details unavailable".to_owned();
        }
        if !self.recreation_causes.is_empty() {
            let causes: Vec<String> = self
                .recreation_causes
                .iter()
                .map(|c| {
                    let how = match c.requires_recreation {
                        RequiresRecreation::Always => "always",
                        _ => "conditionally",
                    };
                    match &c.causing_entity {
                        Some(entity) => format!("{} ({how}, via {entity})", c.property),
                        None => format!("{} ({how})", c.property),
                    }
                })
                .collect();
            return format!("recreated by {}", causes.join(", "));
        }
        format!("changes {}", self.changed.join(", "))
    }
}
