package mssqlmodel

import (
	"fmt"
	"strings"
)

// Permissions: logins (Session.User) are database principals with role
// memberships and GRANT/DENY entries on objects, schemas and the database.
// DENY wins over GRANT at any level; db_owner may do everything;
// db_datareader holds SELECT on the database (every schema and table,
// the cdc schema's included);
// a login AddLogin did not create has Options.DefaultRoles (db_owner).
//
// Permissions the model checks: SELECT (reading a table: error 229), VIEW
// CHANGE TRACKING (CHANGETABLE: error 229), VIEW DATABASE STATE (the
// sys.dm_cdc_* views: error 262), and membership of a capture instance's
// gating role (reading its change table: error 229). Catalog views and
// OBJECT_ID show only objects the login has some permission on.

type principal struct {
	name   string
	role   bool
	member map[string]bool  // roles, lower case
	perms  map[permKey]bool // true GRANT, false DENY
}

type permKey struct {
	perm  string // upper case: "SELECT", "VIEW CHANGE TRACKING", ...
	class string // "OBJECT", "SCHEMA", "DATABASE"
	name  string // lower case "schema.object", "schema", ""
}

// AddLogin creates a login (and its database user) that is a member of
// roles ("db_datareader", a gating role ...) and has no other permission.
func (m *Model) AddLogin(name string, roles ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := &principal{name: name, member: map[string]bool{}, perms: map[permKey]bool{}}
	for _, r := range roles {
		m.addRoleLocked(r)
		p.member[strings.ToLower(r)] = true
	}
	m.principals[strings.ToLower(name)] = p
}

// AddRole creates a database role.
func (m *Model) AddRole(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addRoleLocked(name)
}

func (m *Model) addRoleLocked(name string) {
	k := strings.ToLower(name)
	if _, ok := m.principals[k]; !ok {
		m.principals[k] = &principal{name: name, role: true, member: map[string]bool{}, perms: map[permKey]bool{}}
	}
}

// AddRoleMember adds a login or role to a role.
func (m *Model) AddRoleMember(role, member string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addRoleLocked(role)
	p, ok := m.principals[strings.ToLower(member)]
	if !ok {
		return fmt.Errorf("mssqlmodel: no principal %s", member)
	}
	p.member[strings.ToLower(role)] = true
	return nil
}

// DropRoleMember removes a login or role from a role.
func (m *Model) DropRoleMember(role, member string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.principals[strings.ToLower(member)]; ok {
		delete(p.member, strings.ToLower(role))
	}
}

// Grant grants permission on securable to a login or role. securable is
// "OBJECT::[dbo].[t]" (or just "dbo.t"), "SCHEMA::cdc" or "DATABASE".
func (m *Model) Grant(to, permission, securable string) error {
	return m.setPerm(to, permission, securable, true)
}

// Deny denies permission on securable to a login or role.
func (m *Model) Deny(to, permission, securable string) error {
	return m.setPerm(to, permission, securable, false)
}

// Revoke removes a GRANT or DENY.
func (m *Model) Revoke(to, permission, securable string) error {
	k, err := parseSecurable(permission, securable)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.principals[strings.ToLower(to)]; ok {
		delete(p.perms, k)
	}
	return nil
}

func (m *Model) setPerm(to, permission, securable string, grant bool) error {
	k, err := parseSecurable(permission, securable)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.principals[strings.ToLower(to)]
	if !ok {
		return fmt.Errorf("mssqlmodel: no login or role %s (AddLogin or AddRole first)", to)
	}
	p.perms[k] = grant
	return nil
}

func parseSecurable(permission, securable string) (permKey, error) {
	k := permKey{perm: strings.ToUpper(strings.Join(strings.Fields(permission), " "))}
	class, name, ok := strings.Cut(securable, "::")
	if !ok {
		class, name = "OBJECT", securable
		if strings.EqualFold(securable, "DATABASE") {
			class, name = "DATABASE", ""
		}
	}
	k.class = strings.ToUpper(strings.TrimSpace(class))
	switch k.class {
	case "OBJECT":
		s, n := splitName(name)
		k.name = tableKey(s, n)
	case "SCHEMA":
		k.name = strings.ToLower(strings.Trim(strings.TrimSpace(name), "[]"))
	case "DATABASE":
		k.name = ""
	default:
		return permKey{}, fmt.Errorf("mssqlmodel: unknown securable class %s", class)
	}
	return k, nil
}

// principalsOf returns the login's principal and its roles (and public).
func (m *Model) principalsOf(login string) []*principal {
	p, ok := m.principals[strings.ToLower(login)]
	if !ok {
		p = &principal{name: login, member: map[string]bool{}, perms: map[permKey]bool{}}
		for _, r := range m.opts.DefaultRoles {
			p.member[strings.ToLower(r)] = true
		}
	}
	out := []*principal{p}
	seen := map[string]bool{}
	var add func(q *principal)
	add = func(q *principal) {
		for r := range q.member {
			if seen[r] {
				continue
			}
			seen[r] = true
			if rp, ok := m.principals[r]; ok {
				out = append(out, rp)
				add(rp)
			}
		}
	}
	add(p)
	if !seen["public"] {
		out = append(out, m.principals["public"])
	}
	return out
}

func (m *Model) isMember(login, role string) bool {
	role = strings.ToLower(role)
	for _, p := range m.principalsOf(login)[1:] {
		if strings.ToLower(p.name) == role {
			return true
		}
	}
	return false
}

func (m *Model) isOwner(login string) bool { return m.isMember(login, "db_owner") }

// may reports whether login has permission on the object schema.object
// (object "" for the schema itself; schema "" for the database).
func (m *Model) may(login, perm, schema, object string) bool {
	if m.isOwner(login) {
		return true
	}
	perm = strings.ToUpper(perm)
	keys := []permKey{{perm, "DATABASE", ""}, {"CONTROL", "DATABASE", ""}}
	if schema != "" {
		keys = append(keys, permKey{perm, "SCHEMA", strings.ToLower(schema)}, permKey{"CONTROL", "SCHEMA", strings.ToLower(schema)})
	}
	if object != "" {
		keys = append(keys, permKey{perm, "OBJECT", tableKey(schema, object)}, permKey{"CONTROL", "OBJECT", tableKey(schema, object)})
	}
	ps := m.principalsOf(login)
	for _, p := range ps {
		for _, k := range keys {
			if g, ok := p.perms[k]; ok && !g {
				return false
			}
		}
	}
	for _, p := range ps {
		for _, k := range keys {
			if p.perms[k] {
				return true
			}
		}
	}
	// db_datareader holds SELECT on the database: every schema and table.
	return perm == "SELECT" && m.isMember(login, "db_datareader")
}

// visible reports whether the login can see an object's metadata: it has
// some permission on it.
func (m *Model) visible(login, schema, object string) bool {
	for _, p := range []string{"SELECT", "VIEW CHANGE TRACKING", "VIEW DEFINITION", "INSERT", "UPDATE", "DELETE", "REFERENCES"} {
		if m.may(login, p, schema, object) {
			return true
		}
	}
	return false
}

// userName is USER_NAME(): dbo for the database owner's login (sa and the
// default logins), else the login's name.
func (m *Model) userName(login string) string {
	if _, ok := m.principals[strings.ToLower(login)]; !ok || strings.EqualFold(login, "sa") {
		if m.isOwner(login) {
			return "dbo"
		}
	}
	return login
}

func deniedSelect(perm, object, db, schema string) error {
	return sqlError(229, 14, "The %s permission was denied on the object '%s', database '%s', schema '%s'.", perm, object, db, schema)
}
