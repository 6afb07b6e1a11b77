"""DICOM PS3.15 Annex E, Table E.1-1: the Basic Application Level Confidentiality Profile's
attributes and their actions, as data (facts from the standard, by attribute keyword).

Actions: D replace with a dummy value, Z replace with an empty value, X remove, U replace a UID
with a consistent new one. Where the standard allows a choice (X/Z, X/D, X/Z/D, X/Z/U*, Z/D)
this table takes X (removal), which every such choice permits, except for UIDs (U) and the
attributes whose module makes them Type 2 in every IOD we render (Z). Beyond this table the
de-identifier (deid.py) also removes every private tag, the curve (50xx) and overlay (60xx)
groups, and replaces or removes every other date/time and non-registry UID (stricter than the
profile). SECURITY: data only; never shorten this table without the standard in hand.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["PROFILE", "Action"]

Action = Literal["D", "Z", "X", "U"]

_X = """
AcquisitionComments AcquisitionContextSequence AcquisitionDate AcquisitionDateTime
AcquisitionDeviceProcessingDescription AcquisitionTime ActualHumanPerformersSequence
AdditionalPatientHistory AdmissionID AdmittingDate AdmittingDiagnosesCodeSequence
AdmittingDiagnosesDescription AdmittingTime AffectedSOPInstanceUID Allergies
AuthorObserverSequence BranchOfService CassetteID CommentsOnThePerformedProcedureStep
ConfidentialityConstraintOnPatientDataDescription ContentSequence ContributionDescription
CountryOfResidence CurrentPatientLocation CurveDate CurveTime CustodialOrganizationSequence
DataSetTrailingPadding DateOfLastCalibration DerivationDescription DetectorID
DeviceSerialNumber DigitalSignaturesSequence DischargeDiagnosisDescription DistributionAddress
DistributionName EthnicGroup FrameComments GantryID GeneratorID HumanPerformerName
HumanPerformerOrganization IconImageSequence IdentifyingComments ImageComments
ImagePresentationComments ImagingServiceRequestComments Impressions InstanceCreationDate
InstanceCreationTime InstitutionAddress InstitutionCodeSequence InstitutionName
InstitutionalDepartmentName InsurancePlanIdentification
IntendedRecipientsOfResultsIdentificationSequence InterpretationApproverSequence
InterpretationAuthor InterpretationDiagnosisDescription InterpretationIDIssuer
InterpretationRecorder InterpretationText InterpretationTranscriber IssuerOfAdmissionID
IssuerOfPatientID IssuerOfServiceEpisodeID MAC MedicalAlerts MedicalRecordLocator MilitaryRank
ModifiedAttributesSequence ModifiedImageDescription ModifyingDeviceID NameOfPhysiciansReadingStudy
NamesOfIntendedRecipientsOfResults Occupation OperatorIdentificationSequence OperatorsName
OriginalAttributesSequence OrderCallbackPhoneNumber OrderEnteredBy OrderEntererLocation
OtherPatientIDs OtherPatientIDsSequence OtherPatientNames OverlayDate OverlayTime
ParticipantSequence PatientAddress PatientAge PatientBirthName PatientBirthTime PatientComments
PatientInstitutionResidence PatientInsurancePlanCodeSequence PatientMotherBirthName
PatientPrimaryLanguageCodeSequence PatientReligiousPreference PatientSexNeutered PatientSize
PatientState PatientTelephoneNumbers PatientTransportArrangements PatientWeight
PerformedLocation PerformedProcedureStepDescription PerformedProcedureStepID
PerformedProcedureStepStartDate PerformedProcedureStepStartTime
PerformingPhysicianIdentificationSequence PerformingPhysicianName PersonAddress
PersonTelephoneNumbers PhysicianApprovingInterpretation PhysiciansOfRecord
PhysiciansOfRecordIdentificationSequence PhysiciansReadingStudyIdentificationSequence PlateID
PreMedication PregnancyStatus ProtocolName ReasonForStudy ReasonForTheImagingServiceRequest
ReferencedDigitalSignatureSequence ReferencedImageSequence ReferencedPatientAliasSequence
ReferencedPatientSequence ReferencedPerformedProcedureStepSequence
ReferencedSOPInstanceMACSequence ReferencedStudySequence ReferringPhysicianAddress
ReferringPhysicianIdentificationSequence ReferringPhysicianTelephoneNumbers RegionOfResidence
RequestAttributesSequence RequestedContrastAgent RequestedProcedureComments
RequestedProcedureDescription RequestedProcedureID RequestedProcedureLocation
RequestingPhysician RequestingService ResponsibleOrganization ResponsiblePerson ResultsComments
ResultsDistributionListSequence ResultsIDIssuer ReviewerName ScheduledHumanPerformersSequence
ScheduledPatientInstitutionResidence ScheduledPerformingPhysicianIdentificationSequence
ScheduledPerformingPhysicianName ScheduledProcedureStepDescription ScheduledProcedureStepEndDate
ScheduledProcedureStepEndTime ScheduledProcedureStepLocation ScheduledProcedureStepStartDate
ScheduledProcedureStepStartTime ScheduledStationAETitle
ScheduledStationGeographicLocationCodeSequence ScheduledStationName
ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
SeriesDate SeriesDescription SeriesTime ServiceEpisodeDescription ServiceEpisodeID
SmokingStatus SourceImageSequence SpecialNeeds StationName StudyComments StudyDescription
StudyIDIssuer TextComments TextString TimeOfLastCalibration TimezoneOffsetFromUTC TopicAuthor
TopicKeywords TopicSubject TopicTitle VerifyingOrganization VisitComments
"""

_Z = """
AccessionNumber ContentCreatorName ContentDate ContentTime ContrastBolusAgent
FillerOrderNumberImagingServiceRequest PatientBirthDate PatientID PatientName PatientSex
PlacerOrderNumberImagingServiceRequest ReferringPhysicianName StudyDate StudyID StudyTime
VerifyingObserverIdentificationCodeSequence
"""

_D = """
GraphicAnnotationSequence PersonIdentificationCodeSequence PersonName VerifyingObserverName
VerifyingObserverSequence
"""

_U = """
ConcatenationUID CreatorVersionUID DeviceUID DimensionOrganizationUID DoseReferenceUID
FailedSOPInstanceUIDList FiducialUID FrameOfReferenceUID InstanceCreatorUID
IrradiationEventUID LargePaletteColorLookupTableUID MediaStorageSOPInstanceUID
PaletteColorLookupTableUID ReferencedFrameOfReferenceUID
ReferencedGeneralPurposeScheduledProcedureStepTransactionUID ReferencedSOPInstanceUID
RelatedFrameOfReferenceUID RequestedSOPInstanceUID SeriesInstanceUID SOPInstanceUID
StorageMediaFileSetUID StudyInstanceUID SynchronizationFrameOfReferenceUID
TemplateExtensionCreatorUID TemplateExtensionOrganizationUID TransactionUID UID
"""


def _table() -> dict[str, Action]:
    out: dict[str, Action] = {}
    for action, words in (("X", _X), ("Z", _Z), ("D", _D), ("U", _U)):
        for word in words.split():
            assert word not in out, word  # one action per attribute
            out[word] = action  # type: ignore[assignment]
    return out


PROFILE: dict[str, Action] = _table()
"""Attribute keyword → action (Table E.1-1, Basic Profile column; choices resolved as above)."""
