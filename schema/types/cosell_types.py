"""Typed documents of cosell mapping steps.

Generated from schema/referral.schema.json and schema/opportunity.schema.json by cosell
(host/src/schema_types.rs). Do not edit: change the schemas and regenerate with
`COSELL_UPDATE_TYPES=1 cargo test -p cosell --test schemas`.

Every object may carry fields that are not listed (CRMs are customised);
a TypedDict does not forbid them.
"""

from __future__ import annotations

from typing import Any, TypedDict


class Referral(TypedDict, total=False):
    """A Partner Center co-sell referral as a mapping step sees it: the input of a
    partner-center-to-crm pipeline and the output of a crm-to-partner-center one. The fields
    the default mapping reads and writes are described here; any other field (e.g. `links`,
    `target`, `tags`, `trackingInfo`) is allowed and kept."""

    consent: Consent | None
    """The customer's consent flags."""

    createdDateTime: str | None
    """When the referral was created (RFC 3339)."""

    customerProfile: CustomerProfile | None
    """The end customer: company, address and contacts."""

    details: Details | None
    """Deal value, currency, closing date, notes and requirements."""

    direction: str | None
    """`Incoming` or `Outgoing`."""

    eTag: str | None
    """The referral's ETag (for conditional updates)."""

    engagementId: str | None
    """The engagement that groups this referral with its related referrals."""

    expirationDateTime: str | None
    """When a pending referral expires (RFC 3339)."""

    externalReferenceId: str | None
    """The id of the linked CRM record (the opportunity id), or null."""

    id: str | None
    """The referral's id (a GUID)."""

    inviteContext: InviteContext | None
    """Why the referral was shared and what help is asked of Microsoft."""

    name: str | None
    """The referral's name (the opportunity's topic)."""

    organizationId: str | None
    """The partner organisation that owns the referral."""

    organizationName: str | None
    """The partner organisation's name."""

    qualification: str | None
    """`SalesQualified`, `MarketingQualified`, ..."""

    salesStage: str | None
    """The sales stage, e.g. `Qualify`."""

    status: str | None
    """`New`, `Active` or `Closed`."""

    substatus: str | None
    """`Pending`, `Received`, `Accepted`, `Engaged`, `Declined`, `Won`, `Lost` or `Expired`."""

    team: list[Member] | None
    """The partner's own team on the referral."""

    type: str | None
    """`Independent` or `Shared`."""

    updatedDateTime: str | None
    """When the referral was last updated (RFC 3339)."""


class Address(TypedDict, total=False):
    """A postal address. Other fields (e.g. `region`) are allowed and kept."""

    addressLine1: str | None
    """First street line."""

    addressLine2: str | None
    """Second street line."""

    city: str | None
    """City."""

    country: str | None
    """ISO 3166-1 alpha-2 country code, e.g. `NL` (the default mapping upper-cases it)."""

    postalCode: str | None
    """Postal code."""

    state: str | None
    """State or province."""


class Consent(TypedDict, total=False):
    """The customer's consent flags."""

    consentToContact: bool | None
    """Consent to be contacted."""

    consentToShareReferralWithMicrosoftSellers: bool | None
    """Consent to share the referral with Microsoft sellers."""

    consentToToShareInfoWithOthers: bool | None
    """Consent to share the customer's information with others (Partner Center's spelling)."""


class CustomerProfile(TypedDict, total=False):
    """The end customer of a referral. Other fields (e.g. `ids`, `isMatchingComplete`) are
    allowed and kept."""

    address: Address | None
    """The customer's address."""

    name: str | None
    """The customer's company name."""

    size: str | None
    """The company size, e.g. `251to1000employees`."""

    team: list[Member] | None
    """The customer's contacts."""


class Details(TypedDict, total=False):
    """Deal details of a referral."""

    closingDateTime: str | None
    """Expected closing date (RFC 3339)."""

    currency: str | None
    """ISO 4217 currency code, e.g. `EUR`."""

    customerRequestedContact: bool | None
    """Whether the customer asked to be contacted."""

    dealValue: float | str | None
    """The deal value: a number, though some senders write it as a string."""

    notes: str | None
    """Free-text notes."""

    requirements: Requirements | None
    """Industries, products, services and solutions."""


class InviteContext(TypedDict, total=False):
    """Why a referral was shared. Other fields (e.g. `invitedMpnId`, `invitedBy`) are allowed
    and kept."""

    assistanceRequestCode: str | None
    """"How can Microsoft help?", e.g. `CustomerTechnicalArchitecture`."""

    notes: str | None
    """Notes from whoever shared the referral."""


class Member(TypedDict, total=False):
    """A person on a referral: a customer contact or a partner team member. Other fields (e.g.
    `contactPreference`) are allowed and kept."""

    email: str | None
    """E-mail address."""

    firstName: str | None
    """First name."""

    lastName: str | None
    """Last name."""

    phoneNumber: str | None
    """Phone number."""

    title: str | None
    """Job title (customer contacts)."""


class Requirements(TypedDict, total=False):
    """What the customer needs. Other fields (e.g. `industries`, `products`, `services`) are
    allowed and kept."""

    solutions: list[Solution] | None
    """The solutions (the default mapping writes their ids to the products column)."""


class Solution(TypedDict, total=False):
    """A solution on a referral. Other fields (e.g. `publisherName`, `solutionType`) are
    allowed and kept."""

    id: str | None
    """The solution id, e.g. `SOL-6115380-IPC`."""

    name: str | None
    """The solution's display name."""

    type: str | None
    """`Name` or `Category`."""


class Opportunity(TypedDict, total=False):
    """A Dataverse `opportunity` row as the Web API returns it (with `$expand` of the customer
    account, its contacts, the primary contact and the currency) or takes it: the output of
    a partner-center-to-crm pipeline and the input of a crm-to-partner-center one. cosell's
    own columns are shown with the default prefix `cosell_` (the prefix is configurable);
    any other column (custom columns such as `contoso_territory`, lookups such as
    `_ownerid_value`, OData annotations such as `@odata.etag`) is allowed and kept."""

    closeprobability: int | None
    """The probability of winning, 0 to 100 (a percentage). Not written by the default mapping;
    a step of yours may set it."""

    cosell_audit: str | None
    """The audit trail: one line per change cosell made."""

    cosell_howcanmicrosofthelp: int | None
    """"How can Microsoft help?" (an option-set value; see the mapping's `help-option.*` config
    keys)."""

    cosell_products: str | None
    """The referral's solution ids, comma-separated."""

    cosell_referralidentifier: str | None
    """The linked referral's id."""

    cosell_referrallink: str | None
    """A link to the referral in Partner Center."""

    cosell_syncwithpartnercenter: bool | None
    """Sync with Partner Center: only rows with Yes become referrals."""

    customerid_account: Account | None
    """The customer account (expanded `customerid_account`) with its contacts."""

    description: str | None
    """The description."""

    estimatedclosedate: str | None
    """The estimated close date (`YYYY-MM-DD`)."""

    estimatedvalue: float | str | None
    """The estimated revenue: a number, though some senders write it as a string."""

    name: str | None
    """The topic."""

    opportunityid: str | None
    """The row's id (a GUID)."""

    parentcontactid: Contact | None
    """The primary contact (expanded `parentcontactid`)."""

    statecode: int | None
    """Status: 0 open, 1 won, 2 lost."""

    statuscode: int | None
    """Status reason (an option-set value; the customisable ones are mapping config keys)."""

    stepname: str | None
    """The sales stage's name (up to 200 characters). Not written by the default mapping; a
    step of yours may set it."""

    transactioncurrencyid: Currency | None
    """The currency (expanded `transactioncurrencyid`)."""


class Account(TypedDict, total=False):
    """The customer account. Other columns are allowed and kept."""

    accountid: str | None
    """The account row's id."""

    address1_city: str | None
    """City."""

    address1_country: str | None
    """Country (the default mapping writes ISO 3166-1 alpha-2 codes)."""

    address1_line1: str | None
    """First street line."""

    address1_line2: str | None
    """Second street line."""

    address1_postalcode: str | None
    """Postal code."""

    address1_stateorprovince: str | None
    """State or province."""

    contact_customer_accounts: list[Contact] | None
    """The account's contacts (expanded `contact_customer_accounts`)."""

    name: str | None
    """The company name."""


class Contact(TypedDict, total=False):
    """A Dataverse contact. Other columns are allowed and kept."""

    contactid: str | None
    """The contact row's id."""

    emailaddress1: str | None
    """E-mail address."""

    firstname: str | None
    """First name."""

    jobtitle: str | None
    """Job title."""

    lastname: str | None
    """Last name."""

    telephone1: str | None
    """Phone number."""


class Currency(TypedDict, total=False):
    """The opportunity's currency. Other columns are allowed and kept."""

    isocurrencycode: str | None
    """ISO 4217 code, e.g. `EUR`."""

    transactioncurrencyid: str | None
    """The currency row's id."""
