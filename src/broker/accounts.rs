//! The definitions writer's side of users, vhosts and permissions: every change an operator
//! makes (`spatemq ctl`, a definitions file, the defaults of a fresh data directory), checked
//! the way `rabbitmqctl` checks it, applied to the snapshot every shard reads.
//!
//! Errors are plain sentences for the operator, not AMQP errors: nothing here is reached by
//! a client's method.

use std::sync::Arc;

use super::definitions::Definitions;
use super::passwords::PasswordHash;
use super::snapshot::QueueDef;
use super::users::{Permissions, User, UserLimits, VhostLimits};
use crate::limits::NAME_MAX_BYTES;

/// What a fresh data directory starts with (RabbitMQ's `default_user`, `default_pass`,
/// `default_vhost`): the user is an administrator with every permission on the vhost.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub user: String,
    pub password: String,
    pub vhost: String,
}

impl Default for Defaults {
    fn default() -> Defaults {
        Defaults { user: "guest".into(), password: "guest".into(), vhost: "/".into() }
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{what} name must not be empty"));
    }
    if name.len() > NAME_MAX_BYTES {
        return Err(format!("{what} name is longer than {NAME_MAX_BYTES} bytes"));
    }
    Ok(())
}

impl Definitions {
    /// Creates the default user and vhost with full permissions.
    pub fn seed(&mut self, defaults: &Defaults) -> Result<(), String> {
        if self.snapshot().vhost(&defaults.vhost).is_none() {
            self.add_vhost(&defaults.vhost);
        }
        let password = PasswordHash::new(defaults.password.as_bytes()).map_err(|error| error.to_string())?;
        self.put_user(User::new(&defaults.user, password, vec!["administrator".into()]));
        self.set_permissions(&defaults.user, &defaults.vhost, Permissions::all())
    }

    pub fn add_user(&mut self, name: &str, password: PasswordHash, tags: Vec<String>) -> Result<(), String> {
        check_name("user", name)?;
        if self.snapshot().user(name).is_some() {
            return Err(format!("user '{name}' already exists"));
        }
        self.put_user(User::new(name, password, tags));
        Ok(())
    }

    /// Creates or replaces a user's password and tags, keeping its permissions.
    pub fn put_user(&mut self, mut user: User) {
        let users = &mut self.snapshot_mut().users;
        if let Some(existing) = users.get(&user.name) {
            user.permissions = existing.permissions.clone();
            user.limits = existing.limits;
        }
        users.insert(user.name.clone(), Arc::new(user));
    }

    pub fn delete_user(&mut self, name: &str) -> Result<(), String> {
        self.existing_user(name)?;
        self.snapshot_mut().users.remove(name);
        Ok(())
    }

    pub fn change_password(&mut self, name: &str, password: PasswordHash) -> Result<(), String> {
        self.update_user(name, |user| user.password = password)
    }

    pub fn set_tags(&mut self, name: &str, tags: Vec<String>) -> Result<(), String> {
        self.update_user(name, |user| user.tags = tags)
    }

    fn existing_user(&self, name: &str) -> Result<&Arc<User>, String> {
        self.snapshot().user(name).ok_or_else(|| format!("user '{name}' does not exist"))
    }

    fn update_user(&mut self, name: &str, change: impl FnOnce(&mut User)) -> Result<(), String> {
        self.existing_user(name)?;
        let users = &mut self.snapshot_mut().users;
        if let Some(user) = users.get_mut(name) {
            change(Arc::make_mut(user));
        }
        Ok(())
    }

    /// A new vhost with its predeclared exchanges; an existing one is an error.
    pub fn create_vhost(&mut self, name: &str) -> Result<(), String> {
        check_name("vhost", name)?;
        if self.snapshot().vhost(name).is_some() {
            return Err(format!("vhost '{name}' already exists"));
        }
        self.add_vhost(name);
        Ok(())
    }

    /// Removes the vhost, its exchanges, bindings and queue definitions, and every
    /// permission on it. Returns its queues: their owners must drop their messages.
    pub fn delete_vhost(&mut self, name: &str) -> Result<Vec<Arc<QueueDef>>, String> {
        let Some(vhost) = self.snapshot().vhost(name).cloned() else {
            return Err(format!("vhost '{name}' does not exist"));
        };
        let queues: Vec<Arc<QueueDef>> = vhost.queues.values().cloned().collect();
        let declared_exchanges =
            vhost.exchanges.values().filter(|exchange| !super::definitions::is_predeclared(&exchange.name)).count();
        self.forget_counts(queues.len(), declared_exchanges);
        let snapshot = self.snapshot_mut();
        snapshot.vhosts.remove(name);
        for user in snapshot.users.values_mut() {
            if user.permissions.contains_key(name) {
                Arc::make_mut(user).permissions.remove(name);
            }
        }
        Ok(queues)
    }

    pub fn set_user_limits(&mut self, name: &str, limits: UserLimits) -> Result<(), String> {
        self.update_user(name, |user| user.limits = limits)
    }

    pub fn set_vhost_limits(&mut self, name: &str, limits: VhostLimits) -> Result<(), String> {
        if self.snapshot().vhost(name).is_none() {
            return Err(format!("vhost '{name}' does not exist"));
        }
        let vhosts = &mut self.snapshot_mut().vhosts;
        if let Some(vhost) = vhosts.get_mut(name) {
            Arc::make_mut(vhost).limits = limits;
        }
        Ok(())
    }

    pub fn set_permissions(&mut self, user: &str, vhost: &str, permissions: Permissions) -> Result<(), String> {
        if self.snapshot().vhost(vhost).is_none() {
            return Err(format!("vhost '{vhost}' does not exist"));
        }
        let vhost = vhost.to_string();
        self.update_user(user, |found| {
            found.permissions.insert(vhost, Arc::new(permissions));
        })
    }

    pub fn clear_permissions(&mut self, user: &str, vhost: &str) -> Result<(), String> {
        if self.snapshot().vhost(vhost).is_none() {
            return Err(format!("vhost '{vhost}' does not exist"));
        }
        self.update_user(user, |found| {
            found.permissions.remove(vhost);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::users::{check_access, Access, ResourceKind};

    fn hash(password: &str) -> PasswordHash {
        PasswordHash::new(password.as_bytes()).expect("salt")
    }

    fn fresh() -> Definitions {
        let mut definitions = Definitions::empty(2);
        definitions.seed(&Defaults::default()).expect("seeded");
        definitions
    }

    #[test]
    fn the_defaults_are_guest_with_every_permission_on_the_root_vhost() {
        let definitions = fresh();
        let guest = definitions.snapshot().user("guest").expect("guest").clone();
        assert!(guest.password.verify(b"guest"));
        assert!(!guest.password.verify(b"Guest"));
        assert_eq!(guest.tags, vec!["administrator"]);
        let permissions = definitions.snapshot().permissions("guest", "/").expect("permissions");
        assert!(permissions.configure.matches("anything"));
    }

    #[test]
    fn users_are_added_once_changed_and_deleted() {
        let mut definitions = fresh();
        definitions.add_user("bob", hash("s3cret"), vec![]).expect("added");
        assert_eq!(definitions.add_user("bob", hash("x"), vec![]).expect_err("twice"), "user 'bob' already exists");
        definitions.change_password("bob", hash("new")).expect("changed");
        assert!(definitions.snapshot().user("bob").expect("bob").password.verify(b"new"));
        definitions.set_tags("bob", vec!["monitoring".into()]).expect("tagged");
        definitions.delete_user("bob").expect("deleted");
        assert_eq!(definitions.delete_user("bob").expect_err("gone"), "user 'bob' does not exist");
        assert_eq!(definitions.add_user("", hash("x"), vec![]).expect_err("empty"), "user name must not be empty");
    }

    #[test]
    fn permissions_need_the_user_and_the_vhost_and_go_with_the_vhost() {
        let mut definitions = fresh();
        definitions.add_user("bob", hash("pw"), vec![]).expect("added");
        assert_eq!(
            definitions.set_permissions("bob", "nope", Permissions::all()).expect_err("no vhost"),
            "vhost 'nope' does not exist"
        );
        definitions.create_vhost("apps").expect("vhost");
        let permissions = Permissions::new("^bob-", "^bob-", "^bob-").expect("valid");
        definitions.set_permissions("bob", "apps", permissions).expect("set");
        let found = definitions.snapshot().permissions("bob", "apps").cloned();
        assert!(check_access(found.as_deref(), Access::Read, ResourceKind::Queue, "bob-1", "apps", "bob").is_ok());
        assert!(check_access(found.as_deref(), Access::Read, ResourceKind::Queue, "eve-1", "apps", "bob").is_err());
        definitions.delete_vhost("apps").expect("deleted");
        assert!(definitions.snapshot().permissions("bob", "apps").is_none());
        assert!(definitions.snapshot().vhost("apps").is_none());
        assert_eq!(definitions.create_vhost("/").expect_err("exists"), "vhost '/' already exists");
    }
}
